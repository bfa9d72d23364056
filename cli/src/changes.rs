//! `berth commit --change`: Dockerfile-style instructions applied to an image config.

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

/// Applies one instruction (`CMD ["sh"]`, `ENV A=1`, ...) to the config's `config` object.
pub fn apply(config: &mut Value, instruction: &str) -> Result<()> {
    let (op, rest) = instruction
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((instruction.trim(), ""));
    let rest = rest.trim();
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let c = &mut config["config"];
    match op.to_ascii_uppercase().as_str() {
        "CMD" => c["Cmd"] = command(rest)?,
        "ENTRYPOINT" => c["Entrypoint"] = command(rest)?,
        "WORKDIR" => c["WorkingDir"] = Value::String(non_empty(op, rest)?.to_string()),
        "USER" => c["User"] = Value::String(non_empty(op, rest)?.to_string()),
        "ENV" => {
            let (k, v) = pair(op, rest)?;
            let env = list(c, "Env");
            env.retain(|e| e.as_str().and_then(|s| s.split_once('=')).map(|(ek, _)| ek) != Some(k.as_str()));
            env.push(Value::String(format!("{k}={v}")));
        }
        "LABEL" => {
            let (k, v) = pair(op, rest)?;
            if !c["Labels"].is_object() {
                c["Labels"] = json!({});
            }
            c["Labels"][k] = Value::String(v);
        }
        "EXPOSE" => {
            let port = non_empty(op, rest)?;
            let port = if port.contains('/') { port.to_string() } else { format!("{port}/tcp") };
            if !c["ExposedPorts"].is_object() {
                c["ExposedPorts"] = json!({});
            }
            c["ExposedPorts"][port] = json!({});
        }
        "STOPSIGNAL" => c["StopSignal"] = Value::String(non_empty(op, rest)?.to_string()),
        other => bail!("unsupported --change instruction {other:?} (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL)"),
    }
    Ok(())
}

fn non_empty<'a>(op: &str, rest: &'a str) -> Result<&'a str> {
    if rest.is_empty() {
        bail!("--change {op} needs a value");
    }
    Ok(rest)
}

/// JSON array form, or shell form run through /bin/sh -c, as in a Dockerfile.
fn command(rest: &str) -> Result<Value> {
    if rest.starts_with('[') {
        let v: Vec<String> =
            serde_json::from_str(rest).with_context(|| format!("invalid JSON array {rest:?}"))?;
        return Ok(json!(v));
    }
    Ok(json!(["/bin/sh", "-c", non_empty("CMD", rest)?]))
}

/// `K=V` or `K V`.
fn pair(op: &str, rest: &str) -> Result<(String, String)> {
    let rest = non_empty(op, rest)?;
    let (k, v) = rest
        .split_once('=')
        .or_else(|| rest.split_once(' '))
        .unwrap_or((rest, ""));
    if k.is_empty() {
        bail!("--change {op} needs KEY=VALUE");
    }
    Ok((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
}

fn list<'a>(c: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    if !c[key].is_array() {
        c[key] = json!([]);
    }
    c[key].as_array_mut().expect("just made an array")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_forms() {
        let mut c = json!({"config": {"Env": ["PATH=/bin", "A=1"]}});
        apply(&mut c, r#"CMD ["/bin/app", "--x"]"#).expect("cmd");
        apply(&mut c, "ENTRYPOINT echo hi").expect("entrypoint");
        apply(&mut c, "ENV A=2").expect("env");
        apply(&mut c, "env B 3").expect("env");
        apply(&mut c, "WORKDIR /srv").expect("workdir");
        apply(&mut c, "LABEL org.example=yes").expect("label");
        apply(&mut c, "EXPOSE 80").expect("expose");
        let k = &c["config"];
        assert_eq!(k["Cmd"], json!(["/bin/app", "--x"]));
        assert_eq!(k["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(k["Env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(k["WorkingDir"], "/srv");
        assert_eq!(k["Labels"]["org.example"], "yes");
        assert!(k["ExposedPorts"]["80/tcp"].is_object());
        assert!(apply(&mut c, "RUN make").is_err());
        assert!(apply(&mut c, "CMD [broken").is_err());
        assert!(apply(&mut c, "WORKDIR").is_err());
    }
}
