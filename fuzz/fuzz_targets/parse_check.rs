//! Parse, check and render arbitrary bytes: nothing may panic, overflow the stack or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = nnc_check::check_source(text);
    let _ = nnc_syntax::render(&checked.diagnostics, "fuzz.nn", text, Default::default());
    for model in &checked.models {
        let _ = nnc_check::summary::table(model);
    }
});
