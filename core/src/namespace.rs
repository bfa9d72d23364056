//! Namespaces, as containerd has them: image names, checkouts and containers of one
//! namespace are invisible from another; content, file objects and layer snapshots are
//! shared by all and stored once; gc considers every namespace.

use berth_cas::meta::{self, DEFAULT_NAMESPACE};

use crate::error::{Error, Result};
use crate::root::Root;

/// The namespace a client gets when it names none.
pub const DEFAULT: &str = DEFAULT_NAMESPACE;

/// A root seen from one namespace: the handle every namespaced service hangs off.
#[derive(Clone, Copy)]
pub struct Ns<'r> {
    root: &'r Root,
    name: &'r str,
}

impl<'r> Ns<'r> {
    pub(crate) fn new(root: &'r Root, name: &'r str) -> Self {
        Ns { root, name }
    }

    /// The root.
    pub fn root(&self) -> &'r Root {
        self.root
    }

    /// The namespace's name.
    pub fn name(&self) -> &'r str {
        self.name
    }

    /// Records an event of this namespace.
    pub(crate) fn event(&self, topic: &str, subject: &str, attrs: &[(&str, String)]) {
        self.root.event(self.name, topic, subject, attrs);
    }
}

/// containerd's rule: a DNS label of letters, digits, `-`, `.` and `_`, starting with
/// a letter or digit, at most 76 characters.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 76
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if ok {
        return Ok(());
    }
    Err(Error::InvalidName {
        what: "namespace",
        name: name.to_string(),
        rule: "use up to 76 letters, digits, '-', '.' and '_', starting with a letter or digit",
    })
}

impl Root {
    /// Every namespace that exists (the default one always does).
    pub fn namespaces(&self) -> Result<Vec<String>> {
        Ok(self.store().meta().namespaces()?)
    }

    /// Makes namespace `name` exist (it also comes into being with its first object).
    pub fn create_namespace(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.store()
            .meta()
            .write(|tx| meta::ensure_namespace(tx, name))?;
        Ok(())
    }

    /// Removes an empty namespace.
    pub fn remove_namespace(&self, name: &str) -> Result<()> {
        check_name(name)?;
        if name == DEFAULT {
            return Err(Error::Unsupported(
                "the default namespace cannot be removed".into(),
            ));
        }
        let removed = self
            .store()
            .meta()
            .write(|tx| meta::delete_namespace(tx, name))?;
        match removed {
            true => Ok(()),
            false => Err(Error::NamespaceNotEmpty(name.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_follow_containerds_rule() {
        for ok in ["default", "k8s.io", "team_a-1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(77)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
