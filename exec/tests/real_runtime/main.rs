//! Real containers with real runc and crun, as root. Its own `main` (harness = false):
//! the supervisor re-execs this binary, like the CLI re-execs itself, before threads start.
//! Args: optional substrings to select tests. CI=true turns a missing tool into a failure.

mod fixture;
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};

const SUPERVISE_ENV: &str = "BERTH_TEST_SUPERVISE";

type Test = fn(&str);

fn main() {
    if let Ok(dir) = std::env::var(SUPERVISE_ENV) {
        let cfg = berth_exec::supervisor::SupervisorConfig::load(dir.as_ref())
            .expect("supervisor config");
        match berth_exec::supervisor::run(&cfg) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("supervisor: {e}");
                std::process::exit(125);
            }
        }
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, Test); 10] = [
        ("exit_code_and_stdout", tests::exit_code_and_stdout),
        (
            "env_workdir_user_hostname",
            tests::env_workdir_user_hostname,
        ),
        ("bind_mount_readonly", tests::bind_mount_readonly),
        ("limits_land_in_cgroups", tests::limits_land_in_cgroups),
        (
            "signals_reach_a_shell_trap",
            tests::signals_reach_a_shell_trap,
        ),
        ("pause_resume_and_exec", tests::pause_resume_and_exec),
        (
            "detached_survives_and_records_exit",
            tests::detached_survives_and_records_exit,
        ),
        (
            "terminal_through_console_socket",
            tests::terminal_through_console_socket,
        ),
        (
            "runtime_errors_carry_stderr",
            tests::runtime_errors_carry_stderr,
        ),
        (
            "foreground_runs_as_one_runtime_process",
            tests::foreground_runs_as_one_runtime_process,
        ),
    ];
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for runtime in ["runc", "crun"] {
        if !fixture::available(runtime) {
            skipped += tests.len();
            continue;
        }
        for (name, test) in tests {
            let full = format!("{runtime}::{name}");
            if !filters.is_empty() && !filters.iter().any(|f| full.contains(f.as_str())) {
                continue;
            }
            let t0 = std::time::Instant::now();
            match catch_unwind(AssertUnwindSafe(|| test(runtime))) {
                Ok(()) => {
                    println!("test {full} ... ok ({:.2}s)", t0.elapsed().as_secs_f64());
                    passed += 1;
                }
                Err(_) => {
                    println!("test {full} ... FAILED");
                    failed.push(full);
                }
            }
        }
    }
    println!(
        "\ntest result: {passed} passed; {} failed; {skipped} skipped",
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}
