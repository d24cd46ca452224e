//! "Did you mean": the closest known name to a misspelt one.

/// The candidate closest to `name`, if it is close enough to be a plausible typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Long inputs cannot be typos of short keywords; skip the quadratic comparison.
    if name.len() > 64 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = if c == lower {
                1.0
            } else {
                strsim::jaro_winkler(&lower, c)
            };
            (score, c)
        })
        .filter(|&(score, c)| score >= 0.8 || strsim::damerau_levenshtein(&lower, c) <= 1)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A help line: "did you mean `x`?" or the list of what is allowed.
pub fn help(name: &str, kind: &str, candidates: &[&str]) -> String {
    match closest(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("{kind} are: {}", list(candidates)),
    }
}

/// `a`, `b` and `c`
pub fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        let layers = [
            "dense", "conv2d", "maxpool", "avgpool", "flatten", "dropout",
        ];
        assert_eq!(closest("dnese", layers), Some("dense"));
        assert_eq!(closest("conv", layers), Some("conv2d"));
        assert_eq!(closest("Dense", layers), Some("dense"));
        assert_eq!(closest("maxpol", layers), Some("maxpool"));
        assert_eq!(closest("transformer", layers), None);
    }
}
