//! Registry verbs: pull, push, login, logout.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context as _, Result};
use berth_core::images::{self, PullRequest, PushRequest};

use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PushArgs};
use crate::context::{platform, Context};
use crate::progress;

pub fn pull(ctx: &Context, a: PullArgs, out: &mut dyn Write) -> Result<()> {
    let req = PullRequest {
        reference: a.reference.clone(),
        platform: platform(a.platform.as_deref())?,
        all_platforms: a.all_platforms,
        max_concurrent: a.max_concurrent,
        plain_http: a.plain_http,
        no_unpack: a.no_unpack,
    };
    let bars = progress::Pull::new(a.quiet);
    let pulled = ctx.ns()?.images().pull(&req, &bars);
    bars.finish();
    let (name, digest) = pulled.with_context(|| format!("pulling {}", a.reference))?;
    writeln!(out, "{name} {digest}")?;
    Ok(())
}

pub fn push(ctx: &Context, a: PushArgs, out: &mut dyn Write) -> Result<()> {
    let req = PushRequest {
        reference: a.reference.clone(),
        dest: a.dest,
        max_concurrent: a.max_concurrent,
        plain_http: a.plain_http,
    };
    let (dest, digest) = ctx
        .ns()?
        .images()
        .push(&req, &progress::Push { quiet: a.quiet })
        .with_context(|| format!("pushing {}", a.reference))?;
    writeln!(out, "{dest} {digest}")?;
    Ok(())
}

pub fn login(a: LoginArgs, out: &mut dyn Write) -> Result<()> {
    let username = match a.username {
        Some(u) => u,
        None => prompt_line("Username: ")?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        need_terminal("password")?;
        eprint!("Password: ");
        read_hidden().context("reading the password")?
    };
    if username.is_empty() || password.is_empty() {
        bail!("login to {} needs a username and a password", a.registry);
    }
    let (host, path) = images::login(&a.registry, &username, &password, a.plain_http)
        .with_context(|| format!("logging in to {}", a.registry))?;
    writeln!(
        out,
        "Login succeeded for {host} (credentials in {})",
        path.display()
    )?;
    Ok(())
}

pub fn logout(a: LogoutArgs, out: &mut dyn Write) -> Result<()> {
    match images::logout(&a.registry)? {
        (host, true) => writeln!(out, "Removed credentials for {host}")?,
        (host, false) => writeln!(out, "Not logged in to {host}")?,
    }
    Ok(())
}

/// A line from the terminal on stdin with its echo turned off (the newline still shows).
fn read_hidden() -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd())?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved)?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn need_terminal(what: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the {what}; use -u and --password-stdin");
    }
    Ok(())
}

fn prompt_line(label: &str) -> Result<String> {
    need_terminal(&label.trim_end_matches(": ").to_lowercase())?;
    eprint!("{label}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
