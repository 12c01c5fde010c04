//! What an API key may do: its scopes and the tenant it is bound to.

use std::fmt;

use crate::event::TenantScope;

/// A permission an API key carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Append events.
    Ingest,
    /// Query events, stats, checkpoints and proofs.
    Read,
    /// Follow events live (SSE, WebSocket).
    Stream,
    /// Everything, including key management.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Stream, Scope::Admin];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Stream => "stream",
            Scope::Admin => "admin",
        }
    }

    /// Parses a comma-separated list such as `ingest,read`.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.as_str() == name)
                .ok_or_else(|| {
                    format!("unknown scope {name:?}; scopes are ingest, read, stream, admin")
                })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required (ingest, read, stream, admin)".into());
        }
        scopes.sort();
        Ok(scopes)
    }

    /// The canonical comma-separated spelling of a list.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an authenticated request may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The key's public id (never the secret), for logs and access records.
    pub key_id: String,
    /// What it may do. `admin` implies the others.
    pub scopes: Vec<Scope>,
    /// The one tenant it may touch, or `None` for all.
    pub tenant_id: Option<String>,
}

impl Grant {
    /// Whether the key carries `scope` (directly or through `admin`).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Which tenants this key may write.
    pub fn tenant_scope(&self) -> TenantScope {
        match &self.tenant_id {
            Some(t) => TenantScope::Bound(t.clone()),
            None => TenantScope::Any,
        }
    }

    /// Whether the key may see `tenant`.
    pub fn may_see(&self, tenant: &str) -> bool {
        self.tenant_id.as_deref().is_none_or(|t| t == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_and_refuse_unknown_names() {
        assert_eq!(
            Scope::parse_list("read, ingest,read").unwrap(),
            vec![Scope::Ingest, Scope::Read]
        );
        assert!(Scope::parse_list("write").unwrap_err().contains("write"));
        assert!(Scope::parse_list("").is_err());
    }

    #[test]
    fn admin_implies_every_scope_and_binding_limits_tenants() {
        let grant = Grant {
            key_id: "k".into(),
            scopes: vec![Scope::Admin],
            tenant_id: Some("a".into()),
        };
        assert!(grant.allows(Scope::Read) && grant.allows(Scope::Ingest));
        assert!(grant.may_see("a") && !grant.may_see("b"));
    }
}
