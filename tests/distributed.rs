//! `nnc train` under `mpirun` (the `distributed` feature): 2 ranks on this machine, over
//! shared memory and over TCP. The weights are bitwise identical on both ranks after an
//! epoch (each rank prints a checksum of its weights at the end, rank 0's also equals its
//! checkpoint's); 2 ranks at a global batch B train as 1 process at B does (losses within
//! 1e-5 relative over 20 steps, B odd so the shards are uneven).
//!
//! Needs `mpirun` (Debian: openmpi-bin libopenmpi-dev): a test fails, not skips, without it,
//! since this file is compiled only with the feature, which needs MPI to build.

#![cfg(feature = "distributed")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The MNIST test set's first `n` digits as IDX files in `dir` (`images.idx`, `labels.idx`).
fn digits(dir: &Path, n: usize) {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let ds = nnc_data::mnist(&mnist, nnc_data::Split::Test).expect("MNIST test set");
    let (nnc_data::Inputs::U8 { data, .. }, nnc_data::Targets::Classes { labels, .. }) =
        (&ds.inputs, &ds.targets)
    else {
        panic!("MNIST is u8 images with class labels");
    };
    let mut images = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        images.extend((d as u32).to_be_bytes());
    }
    images.extend_from_slice(&data[..n * 28 * 28]);
    std::fs::write(dir.join("images.idx"), images).expect("write images");
    let mut bytes = vec![0, 0, 8, 1];
    bytes.extend((n as u32).to_be_bytes());
    bytes.extend(labels[..n].iter().map(|&l| l as u8));
    std::fs::write(dir.join("labels.idx"), bytes).expect("write labels");
}

/// A model on `n` digits (trained and tested on the same ones: the tests compare runs, not
/// generalisation) in a fresh directory.
fn model_dir(n: usize, train: &str) -> (tempfile::TempDir, PathBuf) {
    model_dir_with(n, "conv2d(4, 5) -> relu -> maxpool(2)", train)
}

/// [`model_dir`] with `first` as the model's first line of layers.
fn model_dir_with(n: usize, first: &str, train: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    digits(tmp.path(), n);
    let source = format!(
        "model m {{
    input image: f32[1, 28, 28]
    {first}
    flatten
    dense(32) -> relu
    out: dense(10)
}}
train m {{
    data idx(images: \"images.idx\", labels: \"labels.idx\", scale: 1/255)
    test idx(images: \"images.idx\", labels: \"labels.idx\", scale: 1/255)
    loss softmax_cross_entropy
{train}
}}
"
    );
    let file = tmp.path().join("m.nn");
    std::fs::write(&file, source).expect("write model");
    (tmp, file)
}

/// What a run printed, and how it ended.
struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

/// `mpirun -np ranks nnc train args…` with the byte transfer layers `btl` (`vader,self`:
/// shared memory; `tcp,self`: TCP over the loopback interface).
fn mpirun_command(ranks: usize, btl: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--oversubscribe",
        "--allow-run-as-root",
        "-np",
        &ranks.to_string(),
    ])
    .args(["--mca", "btl", btl])
    // Loopback only for TCP: a container's other interfaces may not route to itself.
    .args(["--mca", "btl_tcp_if_include", "lo"])
    // A rank waiting for a collective gives its core to the others (2 ranks may share one).
    .args(["--mca", "mpi_yield_when_idle", "1"])
    .arg(env!("CARGO_BIN_EXE_nnc"))
    .args(["--color", "never", "train"])
    .args(args)
    .current_dir(dir);
    cmd
}

fn mpirun(ranks: usize, btl: &str, dir: &Path, args: &[&str]) -> Run {
    let out = mpirun_command(ranks, btl, dir, args)
        .output()
        .unwrap_or_else(|e| panic!("mpirun does not run ({e}): install openmpi-bin"));
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// The same run in one process.
fn single(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["--color", "never", "train"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("nnc runs");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Each rank's `rank R of N: step S, weights checksum X, communication …` line, by rank: (step, checksum).
fn checksums(stderr: &str, ranks: usize) -> Vec<(u64, u64)> {
    let mut found = vec![None; ranks];
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("rank ") else {
            continue;
        };
        let words: Vec<&str> = rest
            .split([' ', ',', ':'])
            .filter(|w| !w.is_empty())
            .collect();
        if let [
            r,
            "of",
            n,
            "step",
            s,
            "weights",
            "checksum",
            x,
            "communication",
            ..,
        ] = words[..]
        {
            assert_eq!(n, ranks.to_string(), "{line}");
            let r: usize = r.parse().expect("rank");
            let s = s.parse().expect("step");
            found[r] = Some((s, u64::from_str_radix(x, 16).expect("hex checksum")));
        }
    }
    found
        .into_iter()
        .enumerate()
        .map(|(r, f)| f.unwrap_or_else(|| panic!("no checksum line from rank {r}:\n{stderr}")))
        .collect()
}

fn identical_weights_after_an_epoch(btl: &str) {
    // 300 digits at batch 32: 9 full steps and a partial one of 12 (6 per rank).
    let (tmp, file) = model_dir(
        300,
        "    optimizer momentum(lr: 0.05)\n    batch 32\n    epochs 1",
    );
    let out = tmp.path().join("run");
    let args = [file.to_str().expect("utf-8"), "--threads", "1", "--out"];
    let run = mpirun(
        2,
        btl,
        tmp.path(),
        &[&args[..], &[out.to_str().expect("utf-8")]].concat(),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let sums = checksums(&run.stderr, 2);
    assert_eq!(sums[0], sums[1], "ranks differ:\n{}", run.stderr);
    assert_eq!(sums[0].0, 10, "10 steps in the epoch");
    // Rank 0 alone wrote the run directory, and its checkpoint holds the weights it reported.
    let ckpt = nnc::Checkpoint::load(&out.join("checkpoint.safetensors")).expect("checkpoint");
    assert_eq!(nnc::distributed::checksum(&ckpt.params), sums[0].1);
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("epoch"))
            .count(),
        1,
        "one rank prints:\n{}",
        run.stdout
    );
}

#[test]
fn two_ranks_hold_identical_weights_over_shared_memory() {
    identical_weights_after_an_epoch("vader,self");
}

#[test]
fn two_ranks_hold_identical_weights_over_tcp() {
    identical_weights_after_an_epoch("tcp,self");
}

/// The training loss of every epoch of a `--json` run.
/// The ranks share each epoch's evaluation: rank 1 evaluates its shard of every test batch,
/// and the test loss and accuracy rank 0 reports are what one process computes with the
/// weights it saved.
#[test]
fn the_ranks_share_the_evaluation() {
    // 300 digits at batch 32, tested on the same 300: 9 batches of 32 and one of 12, of which
    // rank 1 evaluates 16 and 6: 150 an epoch.
    let (tmp, file) = model_dir(
        300,
        "    optimizer momentum(lr: 0.05)\n    batch 32\n    epochs 2",
    );
    let (path, out) = (file.to_str().expect("utf-8"), tmp.path().join("run"));
    let out = out.to_str().expect("utf-8");
    let args = [path, "--threads", "1", "--json", "--out", out];
    let run = mpirun(2, "vader,self", tmp.path(), &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let evaluated = |rank: usize| {
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("rank {rank} of 2:")))
            .unwrap_or_else(|| panic!("no line from rank {rank}:\n{}", run.stderr));
        let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        let at = words
            .iter()
            .position(|&w| w == "samples")
            .expect("samples evaluated");
        words[at - 1].parse::<usize>().expect("a count")
    };
    assert_eq!((evaluated(0), evaluated(1)), (300, 300), "{}", run.stderr);
    let json = |text: &str, key: &str| -> Vec<f64> {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get(key).and_then(serde_json::Value::as_f64))
            .collect()
    };
    let (losses, accuracies) = (
        json(&run.stdout, "test_loss"),
        json(&run.stdout, "test_acc"),
    );
    assert_eq!(
        losses.len(),
        3,
        "two epochs and the summary:\n{}",
        run.stdout
    );
    let weights = format!("{out}/checkpoint.safetensors");
    let alone = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args([
            "--color",
            "never",
            "eval",
            path,
            "--weights",
            &weights,
            "--json",
        ])
        .current_dir(tmp.path())
        .output()
        .expect("nnc runs");
    let stdout = String::from_utf8_lossy(&alone.stdout);
    assert!(
        alone.status.success(),
        "{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    let (loss, accuracy) = (json(&stdout, "test_loss")[0], json(&stdout, "test_acc")[0]);
    assert_eq!(accuracies[1], accuracy, "{}\n{stdout}", run.stdout);
    assert!(
        (losses[1] - loss).abs() <= 1e-5 * loss.abs(),
        "two ranks {}, one process {loss}",
        losses[1]
    );
}

fn losses(run: &Run) -> Vec<f64> {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("train_loss").and_then(serde_json::Value::as_f64))
        .collect()
}

#[test]
fn two_ranks_train_as_one_process() {
    trains_as_one_process("conv2d(4, 5) -> relu -> maxpool(2)");
}

/// With dropout: the two ranks draw the single process's masks, each its samples' part.
#[test]
fn two_ranks_draw_one_process_dropout_masks() {
    trains_as_one_process("conv2d(4, 5) -> relu -> maxpool(2)\n    dropout(0.3)");
}

fn trains_as_one_process(first: &str) {
    // 33 digits at batch 33: every epoch is one step of the whole set, so the 20 epochs'
    // training losses are 20 steps' losses. 33 is odd: the shards are 17 and 16.
    let (tmp, file) = model_dir_with(
        33,
        first,
        "    optimizer adam(lr: 0.002)\n    batch 33\n    epochs 20",
    );
    let path = file.to_str().expect("utf-8");
    let one = single(
        tmp.path(),
        &[path, "--threads", "1", "--json", "--out", "one"],
    );
    assert_eq!(one.code, 0, "{}", one.stderr);
    let two = mpirun(
        2,
        "vader,self",
        tmp.path(),
        &[path, "--threads", "1", "--json", "--out", "two"],
    );
    assert_eq!(two.code, 0, "{}\n{}", two.stdout, two.stderr);
    let (a, b) = (losses(&one), losses(&two));
    // The summary line repeats the last epoch's keys.
    assert!(a.len() >= 20 && a.len() == b.len(), "{a:?}\n{b:?}");
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs(),
            "step {}: one process {x}, two ranks {y}",
            step + 1
        );
    }
    // The run learnt something: the comparison is not of two flat curves.
    assert!(a[19] < 0.8 * a[0], "{a:?}");
}

/// A named tensor of a run directory's checkpoint whose name ends in `suffix`.
fn checkpoint_tensor(run: &Path, suffix: &str) -> Vec<f32> {
    let ckpt = nnc::Checkpoint::load(&run.join("checkpoint.safetensors")).expect("checkpoint");
    ckpt.params
        .into_iter()
        .find(|t| t.name.ends_with(suffix))
        .unwrap_or_else(|| panic!("no `*{suffix}` in the checkpoint"))
        .data
}

#[test]
fn batchnorm_running_statistics_are_averaged_over_the_ranks() {
    // One step of 33 digits (shards of 17 and 16): batchnorm right after the first
    // convolution sees the same inputs on 1 process and on 2 ranks, so after the step the
    // running mean (0.9·0 + 0.1·batch mean) is the global batch's either way, and the running
    // variance's batch part is the ranks' mean within-shard variance: at most the global
    // batch's (the law of total variance), and close to it.
    let (tmp, file) = model_dir_with(
        33,
        "conv2d(4, 5, bias: false) -> batchnorm(momentum: 0.9) -> relu -> maxpool(2)",
        "    optimizer sgd(lr: 0.05)\n    batch 33\n    epochs 1",
    );
    let path = file.to_str().expect("utf-8");
    let one = single(tmp.path(), &[path, "--threads", "1", "--out", "one"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let two = mpirun(
        2,
        "vader,self",
        tmp.path(),
        &[path, "--threads", "1", "--out", "two"],
    );
    assert_eq!(two.code, 0, "{}\n{}", two.stdout, two.stderr);
    // The checksums cover the running statistics: equal on both ranks.
    let sums = checksums(&two.stderr, 2);
    assert_eq!(sums[0], sums[1], "ranks differ:\n{}", two.stderr);

    let (one_dir, two_dir) = (tmp.path().join("one"), tmp.path().join("two"));
    let (mean1, mean2) = (
        checkpoint_tensor(&one_dir, ".running_mean"),
        checkpoint_tensor(&two_dir, ".running_mean"),
    );
    assert_eq!(mean1.len(), 4);
    let scale = mean1.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(scale > 1e-3, "the running mean moved: {mean1:?}");
    for (a, b) in mean1.iter().zip(&mean2) {
        assert!((a - b).abs() <= 1e-5 * scale, "{mean1:?}\n{mean2:?}");
    }
    let batch_var = |v: Vec<f32>| -> Vec<f32> { v.iter().map(|x| (x - 0.9) / 0.1).collect() };
    let (var1, var2) = (
        batch_var(checkpoint_tensor(&one_dir, ".running_var")),
        batch_var(checkpoint_tensor(&two_dir, ".running_var")),
    );
    for (a, b) in var1.iter().zip(&var2) {
        assert!(
            *a > 0.0 && *b <= a * (1.0 + 1e-4) && *b >= 0.5 * a,
            "{var1:?}\n{var2:?}"
        );
    }
}

/// The process of rank `rank` among `parent`'s children (OpenMPI's mpirun starts the local
/// ranks itself, each with `OMPI_COMM_WORLD_RANK` in its environment).
fn rank_pid(parent: u32, rank: usize) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid …`: the fields after the command's closing parenthesis.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        (ppid == parent && env.split(|&b| b == 0).any(|v| v == wanted.as_bytes())).then_some(pid)
    })
}

/// Starts a long 2-rank run, waits until both ranks train, sends `signal` to rank `rank`'s
/// process (or to mpirun's with `None`), and returns how the job ended and how long after.
fn signal_a_running_job(
    signal: &str,
    rank: Option<usize>,
) -> (std::process::ExitStatus, std::time::Duration) {
    use std::time::{Duration, Instant};
    let (tmp, file) = model_dir(
        300,
        "    optimizer momentum(lr: 0.05)\n    batch 32\n    epochs 100000",
    );
    let path = file.to_str().expect("utf-8");
    let mut job = mpirun_command(2, "vader,self", tmp.path(), &[path, "--threads", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mpirun starts");
    let started = Instant::now();
    let victim = loop {
        if rank_pid(job.id(), 1).is_some() {
            break match rank {
                Some(r) => rank_pid(job.id(), r).expect("rank's process"),
                None => job.id(),
            };
        }
        if started.elapsed() > Duration::from_secs(30) || job.try_wait().ok().flatten().is_some() {
            let _ = job.kill();
            panic!("rank 1 never started");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let the ranks compile and train a while: the signal lands between or inside collectives.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        job.try_wait().expect("wait").is_none(),
        "the job ended before the signal"
    );
    let sent = Command::new("kill")
        .args([signal, &victim.to_string()])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {victim}");
    let at = Instant::now();
    loop {
        if let Some(status) = job.try_wait().expect("wait") {
            return (status, at.elapsed());
        }
        if at.elapsed() > Duration::from_secs(20) {
            let _ = job.kill();
            panic!("the job still runs 20 s after {signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_rank_ends_the_job_within_seconds() {
    let (status, after) = signal_a_running_job("-KILL", Some(1));
    assert!(!status.success(), "{status}");
    assert!(after.as_secs() < 10, "{after:?}");
}

#[test]
fn ctrl_c_on_mpirun_ends_the_job_within_seconds() {
    // A terminal's Ctrl-C reaches mpirun's process group (each rank has its own): mpirun
    // ends the ranks.
    let (status, after) = signal_a_running_job("-INT", None);
    assert!(!status.success(), "{status}");
    assert!(after.as_secs() < 10, "{after:?}");
}

/// Training losses of the epochs of a run interrupted after `steps` steps on `first` ranks and
/// resumed on `then` ranks (1: a plain process), `--json` lines of both sessions in order.
fn stop_and_resume(dir: &Path, file: &str, out: &str, first: usize, then: usize) -> Vec<f64> {
    let session = |ranks: usize, extra: &[&str]| {
        let args = [&[file, "--threads", "1", "--json", "--out", out][..], extra].concat();
        if ranks == 1 {
            single(dir, &args)
        } else {
            mpirun(ranks, "vader,self", dir, &args)
        }
    };
    let a = session(first, &["--stop-after-steps", "5"]);
    // Rank 0 ends as after Ctrl-C (130), so mpirun reports a failed job.
    assert_ne!(a.code, 0, "{}\n{}", a.stdout, a.stderr);
    assert!(a.stderr.contains("continue with"), "{}", a.stderr);
    let b = session(then, &["--resume"]);
    assert_eq!(b.code, 0, "{}\n{}", b.stdout, b.stderr);
    losses(&b)
}

#[test]
fn a_checkpoint_of_two_ranks_resumes_on_one_and_back() {
    // 99 digits at batch 33: 3 steps an epoch; the stop after 5 is in the middle of epoch 2.
    let (tmp, file) = model_dir(
        99,
        "    optimizer adam(lr: 0.002)\n    batch 33\n    epochs 3",
    );
    let path = file.to_str().expect("utf-8");
    let straight = losses(&single(
        tmp.path(),
        &[path, "--threads", "1", "--json", "--out", "straight"],
    ));
    assert_eq!(straight.len(), 4, "3 epochs and the summary: {straight:?}");
    for (first, then) in [(2, 1), (1, 2)] {
        let resumed = stop_and_resume(tmp.path(), path, &format!("run{first}{then}"), first, then);
        // The resumed session reports epochs 2 and 3 (and the summary).
        assert_eq!(resumed.len(), 3, "{first} → {then} ranks: {resumed:?}");
        for (x, y) in straight[1..].iter().zip(&resumed) {
            assert!(
                (x - y).abs() <= 1e-5 * x.abs(),
                "{first} → {then} ranks: straight {straight:?}, resumed {resumed:?}"
            );
        }
    }
}

#[test]
fn the_interpreter_is_refused_by_every_rank() {
    let (tmp, file) = model_dir(40, "    optimizer sgd(lr: 0.1)\n    batch 8\n    epochs 1");
    let path = file.to_str().expect("utf-8");
    let run = mpirun(2, "vader,self", tmp.path(), &[path, "--backend", "interp"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("runs on the jit backend").count(),
        1,
        "rank 0 alone says why:\n{}",
        run.stderr
    );
    assert!(!tmp.path().join("runs").exists(), "no run directory");
}

#[test]
fn shards_cover_the_batch_once() {
    use nnc::distributed::shard;
    for batch in 0..40 {
        for size in 1..9 {
            let parts: Vec<_> = (0..size).map(|r| shard(batch, r, size)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[size - 1].end, batch);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].len() >= w[1].len() && w[0].len() <= w[1].len() + 1);
            }
        }
    }
    assert_eq!(shard(5, 0, 2), 0..3);
    assert_eq!(shard(5, 1, 2), 3..5);
}

#[test]
fn ranks_on_one_machine_share_its_threads() {
    use nnc::distributed::threads_per_rank;
    assert_eq!(threads_per_rank(8, 2), 4);
    assert_eq!(threads_per_rank(2, 2), 1);
    assert_eq!(threads_per_rank(2, 3), 1);
    assert_eq!(threads_per_rank(7, 2), 3);
    assert_eq!(threads_per_rank(4, 0), 4);
}
