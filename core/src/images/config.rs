//! Image configs as typed values: the config a commit writes, and the Dockerfile-style
//! `--change` instructions applied to it.

use std::collections::HashMap;

use berth_cas::Platform;
use oci_spec::image::{Arch, Config, HistoryBuilder, ImageConfiguration, Os, RootFs};

use crate::error::{Error, Result};

/// What a commit records besides its layer.
#[derive(Debug, Clone, Default)]
pub struct CommitMessage {
    /// The history comment.
    pub message: Option<String>,
    /// The author (config and history).
    pub author: Option<String>,
    /// Dockerfile-style instructions: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL,
    /// EXPOSE, STOPSIGNAL.
    pub changes: Vec<String>,
}

/// The config of an empty image for this machine (a scratch checkout's base).
pub fn scratch_config() -> ImageConfiguration {
    let plat = Platform::host();
    let mut c = ImageConfiguration::default();
    c.set_os(Os::from(plat.os.as_str()));
    c.set_architecture(Arch::from(plat.architecture.as_str()));
    if !plat.variant.is_empty() {
        c.set_variant(Some(plat.variant.clone()));
    }
    c.set_config(Some(Config::default()));
    c.set_rootfs(RootFs::default());
    c.set_history(Some(Vec::new()));
    c
}

/// `base` with one more layer (`diff_id`), a history entry, and the changes applied.
pub fn committed(
    mut base: ImageConfiguration,
    diff_id: &str,
    msg: &CommitMessage,
    now: &str,
) -> Result<ImageConfiguration> {
    base.rootfs_mut().diff_ids_mut().push(diff_id.to_string());
    let mut entry = HistoryBuilder::default()
        .created(now)
        .created_by("berth commit");
    if let Some(m) = &msg.message {
        entry = entry.comment(m.as_str());
    }
    if let Some(a) = &msg.author {
        entry = entry.author(a.as_str());
        base.set_author(Some(a.clone()));
    }
    let entry = entry
        .build()
        .map_err(|e| Error::BadChange(format!("history entry: {e}")))?;
    base.history_mut().get_or_insert_with(Vec::new).push(entry);
    base.set_created(Some(now.to_string()));
    let mut config = base.config().clone().unwrap_or_default();
    for ch in &msg.changes {
        apply(&mut config, ch)?;
    }
    base.set_config(Some(config));
    Ok(base)
}

/// Applies one instruction (`CMD ["sh"]`, `ENV A=1`, ...) to a config.
pub fn apply(c: &mut Config, instruction: &str) -> Result<()> {
    let (op, rest) = instruction
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((instruction.trim(), ""));
    let rest = rest.trim();
    match op.to_ascii_uppercase().as_str() {
        "CMD" => {
            c.set_cmd(Some(command(op, rest)?));
        },
        "ENTRYPOINT" => {
            c.set_entrypoint(Some(command(op, rest)?));
        },
        "WORKDIR" => {
            c.set_working_dir(Some(non_empty(op, rest)?.to_string()));
        },
        "USER" => {
            c.set_user(Some(non_empty(op, rest)?.to_string()));
        },
        "STOPSIGNAL" => {
            c.set_stop_signal(Some(non_empty(op, rest)?.to_string()));
        },
        "ENV" => {
            let (k, v) = pair(op, rest)?;
            let mut env = c.env().clone().unwrap_or_default();
            env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
            env.push(format!("{k}={v}"));
            c.set_env(Some(env));
        }
        "LABEL" => {
            let (k, v) = pair(op, rest)?;
            c.labels_mut().get_or_insert_with(HashMap::new).insert(k, v);
        }
        "EXPOSE" => {
            let port = non_empty(op, rest)?;
            let port = match port.contains('/') {
                true => port.to_string(),
                false => format!("{port}/tcp"),
            };
            let mut ports = c.exposed_ports().clone().unwrap_or_default();
            if !ports.contains(&port) {
                ports.push(port);
            }
            c.set_exposed_ports(Some(ports));
        }
        other => {
            return Err(Error::BadChange(format!(
                "{other:?} is not supported (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL)"
            )))
        }
    }
    Ok(())
}

fn non_empty<'a>(op: &str, rest: &'a str) -> Result<&'a str> {
    match rest.is_empty() {
        true => Err(Error::BadChange(format!("{op} needs a value"))),
        false => Ok(rest),
    }
}

/// JSON array form, or shell form run through /bin/sh -c, as in a Dockerfile.
fn command(op: &str, rest: &str) -> Result<Vec<String>> {
    if rest.starts_with('[') {
        return serde_json::from_str(rest)
            .map_err(|e| Error::BadChange(format!("{op}: invalid JSON array {rest:?}: {e}")));
    }
    Ok(vec![
        "/bin/sh".into(),
        "-c".into(),
        non_empty(op, rest)?.into(),
    ])
}

/// `K=V` or `K V`.
fn pair(op: &str, rest: &str) -> Result<(String, String)> {
    let rest = non_empty(op, rest)?;
    let (k, v) = rest
        .split_once('=')
        .or_else(|| rest.split_once(' '))
        .unwrap_or((rest, ""));
    if k.is_empty() {
        return Err(Error::BadChange(format!("{op} needs KEY=VALUE")));
    }
    Ok((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_forms() {
        let mut c = Config::default();
        c.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        apply(&mut c, r#"CMD ["/bin/app", "--x"]"#).expect("cmd");
        apply(&mut c, "ENTRYPOINT echo hi").expect("entrypoint");
        apply(&mut c, "ENV A=2").expect("env");
        apply(&mut c, "env B 3").expect("env");
        apply(&mut c, "WORKDIR /srv").expect("workdir");
        apply(&mut c, "LABEL org.example=yes").expect("label");
        apply(&mut c, "EXPOSE 80").expect("expose");
        assert_eq!(c.cmd().clone().expect("cmd"), ["/bin/app", "--x"]);
        assert_eq!(
            c.entrypoint().clone().expect("entrypoint"),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(c.env().clone().expect("env"), ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(c.working_dir().as_deref(), Some("/srv"));
        assert_eq!(c.labels().as_ref().expect("labels")["org.example"], "yes");
        assert_eq!(c.exposed_ports().clone().expect("ports"), ["80/tcp"]);
        assert!(apply(&mut c, "RUN make").is_err());
        assert!(apply(&mut c, "CMD [broken").is_err());
        assert!(apply(&mut c, "WORKDIR").is_err());
    }

    #[test]
    fn a_commit_adds_a_layer_and_history_and_keeps_the_rest() {
        let mut base = scratch_config();
        let mut c = Config::default();
        c.set_user(Some("nobody".into()));
        base.set_config(Some(c));
        let msg = CommitMessage {
            message: Some("add tools".into()),
            author: Some("alice".into()),
            changes: vec!["ENV MODE=prod".into()],
        };
        let out = committed(base, "sha256:aa", &msg, "2026-12-02T00:00:00Z").expect("commit");
        assert_eq!(out.rootfs().diff_ids(), &["sha256:aa".to_string()]);
        let history = out.history().as_ref().expect("history");
        assert_eq!(history[0].comment().as_deref(), Some("add tools"));
        assert_eq!(out.author().as_deref(), Some("alice"));
        let config = out.config().as_ref().expect("config");
        assert_eq!(config.user().as_deref(), Some("nobody"));
        assert_eq!(config.env().clone().expect("env"), ["MODE=prod"]);
        let json = serde_json::to_value(&out).expect("json");
        assert_eq!(json["config"]["Env"][0], "MODE=prod");
        assert_eq!(json["rootfs"]["type"], "layers");
    }
}
