//! One module per group of verbs; each handler calls the core and writes to `out`.

mod checkout;
mod containers;
mod images;
mod maintenance;
mod net;
mod registry;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::context::Context;

/// Runs the parsed command; returns the process exit code.
pub fn dispatch(args: Cli) -> Result<ExitCode> {
    let ctx = Context::new(&args.global);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let out: &mut dyn Write = &mut out;
    match args.command {
        Command::Pull(a) => registry::pull(&ctx, a, out),
        Command::Push(a) => registry::push(&ctx, a, out),
        Command::Login(a) => registry::login(a, out),
        Command::Logout(a) => registry::logout(a, out),
        Command::Import(a) => images::import(&ctx, a, out),
        Command::Export(a) => images::export(&ctx, a, out),
        Command::Images(a) => images::list(&ctx, a, out),
        Command::Inspect(a) => images::inspect(&ctx, a, out),
        Command::Tag(a) => images::tag(&ctx, a, out),
        Command::Rmi(a) => images::rmi(&ctx, a, out),
        Command::Log(a) => images::log(&ctx, a, out),
        Command::Checkout(a) => checkout::checkout(&ctx, a, out),
        Command::Checkouts => checkout::list(&ctx, out),
        Command::Status(a) => checkout::status(&ctx, a, out),
        Command::Diff(a) => checkout::diff(&ctx, a, out),
        Command::Commit(a) => checkout::commit(&ctx, a, out),
        Command::Discard(a) => checkout::discard(&ctx, a, out),
        Command::Mount(a) => checkout::mount(&ctx, a, out),
        Command::Umount(a) => checkout::umount(&ctx, a, out),
        Command::FuseServe(a) => checkout::serve_view(&ctx, a),
        Command::Snapshots(a) => maintenance::snapshots(&ctx, a, out),
        Command::Gc(a) => maintenance::gc(&ctx, a, out),
        Command::Du => maintenance::du(&ctx, out),
        Command::Info => maintenance::info(&ctx, out),
        Command::Fsck(a) => return maintenance::fsck(&ctx, a, out),
        Command::Events(a) => maintenance::events(&ctx, a, out),
        Command::Namespaces(a) => maintenance::namespaces(&ctx, a, out),
        Command::Manpages { dir } => maintenance::manpages(&dir, out),
        Command::Run(a) => return containers::run(&ctx, a, out),
        Command::Create(a) => containers::create(&ctx, a, out),
        Command::Start(a) => containers::start(&ctx, a, out),
        Command::Ps(a) => containers::ps(&ctx, a, out),
        Command::Exec(a) => return containers::exec(&ctx, a),
        Command::Kill(a) => containers::kill(&ctx, a, out),
        Command::Stop(a) => containers::stop(&ctx, a, out),
        Command::Pause(a) => containers::pause(&ctx, a, out),
        Command::Resume(a) => containers::resume(&ctx, a, out),
        Command::Wait(a) => return containers::wait(&ctx, a, out),
        Command::Rm(a) => containers::rm(&ctx, a, out),
        Command::InspectContainer(a) => containers::inspect(&ctx, a, out),
        Command::Supervise(a) => return containers::supervise(&ctx, a),
        Command::Net(a) => net::run(&ctx, a, out),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "berth", out);
            Ok(())
        }
    }?;
    Ok(ExitCode::SUCCESS)
}

/// An exit status from a container's code (docker's: the low byte).
pub fn code(n: i32) -> ExitCode {
    ExitCode::from((n & 0xff) as u8)
}
