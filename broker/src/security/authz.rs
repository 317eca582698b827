//! Authorization: a request's [`Principal`] against the ACLs in force (docs/security.md).
//!
//! - [`Authorizer`]: `[authorization]` as the broker runs it; [`Authorizer::check`] allows, or
//!   refuses with `PERMISSION_DENIED` naming the principal, the operation and the resource,
//!   counting the denial and writing it to the [`AuditLog`].
//! - [`LocalAcls`]: where a broker that runs alone keeps its ACLs (`<data_dir>/acls.json`); in
//!   a cluster they are part of the replicated metadata.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::acl::{self, Acl, Decision, Operation, ResourceType};
use super::auth::Principal;
use crate::config::{AuthorizationConfig, BrokerConfigError};
use crate::log::LogError;
use crate::server::incoming::PeerInfo;

/// Who sent a request: its principal and, when known, its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Set by the authentication interceptor; anonymous if it did not run.
    pub principal: Principal,
    /// The remote address of the connection.
    pub peer: Option<SocketAddr>,
}

impl Caller {
    /// The caller of `request`.
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        let extensions = request.extensions();
        Caller {
            principal: (extensions.get::<Principal>().cloned())
                .unwrap_or_else(Principal::anonymous),
            peer: extensions.get::<PeerInfo>().map(|p| p.remote_addr),
        }
    }
}

/// `[authorization]` as the broker runs it.
#[derive(Debug)]
pub struct Authorizer {
    enabled: bool,
    super_users: BTreeSet<String>,
    audit: AuditLog,
}

impl Authorizer {
    /// From the (validated) configuration; the audit log is opened on its first entry.
    pub fn new(
        config: &AuthorizationConfig,
        data_dir: &Path,
    ) -> Result<Authorizer, BrokerConfigError> {
        Ok(Authorizer {
            enabled: config.enabled,
            super_users: config.super_users()?.into_iter().collect(),
            audit: AuditLog::new(config.audit_log_path(data_dir), config.audit_log_max_bytes),
        })
    }

    /// Authorization is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Whether `caller` may do `operation` on `resource` under `acls` (always, while
    /// authorization is off). Records nothing: for filtering listings.
    pub fn permits(
        &self,
        acls: &BTreeSet<Acl>,
        caller: &Caller,
        operation: Operation,
        resource: (ResourceType, &str),
    ) -> bool {
        !self.enabled
            || acl::decide(
                &self.super_users,
                acls,
                &caller.principal,
                operation,
                resource,
            )
            .is_allowed()
    }

    /// Whether `caller` may do `operation` on some resource of `resource_type`
    /// ([`acl::allows_some`]; always, while authorization is off).
    pub fn permits_some(
        &self,
        acls: &BTreeSet<Acl>,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        !self.enabled
            || acl::allows_some(
                &self.super_users,
                acls,
                &caller.principal,
                operation,
                resource_type,
            )
    }

    /// Ok when `caller` may do `operation` on every resource of `resource_type` named in
    /// `names`; otherwise `PERMISSION_DENIED` for the first one it may not, after counting the
    /// denial and writing it to the audit log. `rpc` names the request in the audit log.
    pub fn check<'a>(
        &self,
        acls: &BTreeSet<Acl>,
        caller: &Caller,
        rpc: &'static str,
        operation: Operation,
        resource_type: ResourceType,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), tonic::Status> {
        if !self.enabled {
            return Ok(());
        }
        for name in names {
            let decision = acl::decide(
                &self.super_users,
                acls,
                &caller.principal,
                operation,
                (resource_type, name),
            );
            if !decision.is_allowed() {
                return Err(self.deny(caller, rpc, operation, resource_type, name, decision));
            }
        }
        Ok(())
    }

    /// Records a denial and returns the status that reports it.
    pub fn deny(
        &self,
        caller: &Caller,
        rpc: &'static str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
        decision: Decision,
    ) -> tonic::Status {
        let reason = match decision {
            Decision::Denied => "an ACL denies it",
            _ => "no ACL allows it",
        };
        metrics::counter!(
            "brook_authorization_denied_total",
            "operation" => operation.to_string(),
            "resource_type" => resource_type.to_string()
        )
        .increment(1);
        tracing::info!(
            principal = %caller.principal,
            peer = ?caller.peer,
            rpc,
            %operation,
            %resource_type,
            resource = name,
            reason,
            "request denied"
        );
        self.audit.write(&AuditEntry {
            time_ms: now_ms(),
            event: "denied",
            principal: caller.principal.as_str(),
            peer: caller.peer.map(|p| p.to_string()),
            rpc,
            operation: Some(operation),
            resource_type: Some(resource_type),
            resource: Some(name),
            reason: Some(reason),
            acls: Vec::new(),
        });
        tonic::Status::permission_denied(format!(
            "{} may not {operation} {resource_type} {name:?}: {reason}",
            caller.principal
        ))
    }

    /// Writes an ACL change by `caller` to the audit log.
    pub fn audit_change(
        &self,
        caller: &Caller,
        rpc: &'static str,
        event: &'static str,
        acls: &[Acl],
    ) {
        self.audit.write(&AuditEntry {
            time_ms: now_ms(),
            event,
            principal: caller.principal.as_str(),
            peer: caller.peer.map(|p| p.to_string()),
            rpc,
            operation: None,
            resource_type: None,
            resource: None,
            reason: None,
            acls: acls.to_vec(),
        });
    }
}

fn now_ms() -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH)).map_or(0, |d| d.as_millis() as u64)
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
pub struct AuditEntry<'a> {
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `denied`, `acls_created` or `acls_deleted`.
    pub event: &'static str,
    /// Who.
    pub principal: &'a str,
    /// From where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The gRPC method.
    pub rpc: &'static str,
    /// For a denial: the operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// For a denial: the resource's type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<ResourceType>,
    /// For a denial: the resource's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<&'a str>,
    /// For a denial: why (`no ACL allows it`, `an ACL denies it`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// For an ACL change: the ACLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<Acl>,
}

/// An append-only file of JSON lines, moved to `<path>.1` (replacing it) when a line would
/// take it past its size limit. Lines are written whole with one `write`, not fsynced: the
/// log is for people, and a crash may lose its last lines.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<(File, u64)>>,
}

impl AuditLog {
    /// A log at `path`, opened on its first line.
    pub fn new(path: PathBuf, max_bytes: u64) -> AuditLog {
        AuditLog {
            path,
            max_bytes,
            file: Mutex::new(None),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as a line. A failure is logged and counted
    /// (`brook_audit_log_failures_total`), never returned: the request's outcome stands.
    pub fn write(&self, entry: &impl Serialize) {
        let mut line = serde_json::to_vec(entry).expect("audit entries serialize");
        line.push(b'\n');
        let mut file = self.file.lock().expect("audit log lock");
        if let Err(e) = self.append(&mut file, &line) {
            *file = None;
            metrics::counter!("brook_audit_log_failures_total").increment(1);
            tracing::error!(path = %self.path.display(), cause = %e, "cannot write the audit log");
        }
    }

    fn append(&self, file: &mut Option<(File, u64)>, line: &[u8]) -> std::io::Result<()> {
        if let Some((_, size)) = file
            && *size > 0
            && *size + line.len() as u64 > self.max_bytes
        {
            *file = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        if file.is_none() {
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let size = opened.metadata()?.len();
            *file = Some((opened, size));
        }
        let (f, size) = file.as_mut().expect("opened above");
        f.write_all(line)?;
        *size += line.len() as u64;
        Ok(())
    }
}

/// The file a broker that runs alone keeps its ACLs in, under its data directory.
pub const ACLS_FILE: &str = "acls.json";

#[derive(Debug, Serialize, Deserialize)]
struct AclsFile {
    version: u32,
    acls: BTreeSet<Acl>,
}

/// Why the ACL file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AclStoreError {
    /// It could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It is not an ACL file, or holds an invalid ACL.
    #[error("{} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// It could not be written.
    #[error(transparent)]
    Write(#[from] LogError),
}

/// The ACLs of a broker that runs alone, kept in `<data_dir>/acls.json` (written to a temporary
/// file, fsynced and renamed over it).
#[derive(Debug)]
pub struct LocalAcls {
    dir: PathBuf,
    acls: RwLock<BTreeSet<Acl>>,
    /// One change at a time, so the file follows the changes in order.
    writer: tokio::sync::Mutex<()>,
}

impl LocalAcls {
    /// Reads the file in `data_dir`, or starts empty if there is none.
    pub fn open(data_dir: &Path) -> Result<LocalAcls, AclStoreError> {
        let path = data_dir.join(ACLS_FILE);
        let acls = match std::fs::read(&path) {
            Ok(bytes) => {
                let damaged = |reason: String| AclStoreError::Damaged {
                    path: path.clone(),
                    reason,
                };
                let file: AclsFile =
                    serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
                if file.version != 1 {
                    return Err(damaged(format!("unknown version {}", file.version)));
                }
                for a in &file.acls {
                    a.validate().map_err(|e| damaged(e.to_string()))?;
                }
                file.acls
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => return Err(AclStoreError::Read { path, source }),
        };
        Ok(LocalAcls {
            dir: data_dir.to_path_buf(),
            acls: RwLock::new(acls),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `f` on the ACLs in force.
    pub fn with<R>(&self, f: impl FnOnce(&BTreeSet<Acl>) -> R) -> R {
        f(&self.acls.read().expect("acls lock"))
    }

    /// Adds `acls` (each already valid) and writes the file; in force once it returns Ok.
    pub async fn create(&self, acls: &[Acl]) -> Result<(), AclStoreError> {
        self.change(|set| set.extend(acls.iter().cloned())).await
    }

    /// Removes `acls` and writes the file; returns those that were there.
    pub async fn delete(&self, acls: &[Acl]) -> Result<Vec<Acl>, AclStoreError> {
        let mut removed = Vec::new();
        self.change(|set| removed.extend(acls.iter().filter(|a| set.remove(a)).cloned()))
            .await?;
        Ok(removed)
    }

    async fn change(&self, f: impl FnOnce(&mut BTreeSet<Acl>)) -> Result<(), AclStoreError> {
        let _writer = self.writer.lock().await;
        let mut next = self.with(Clone::clone);
        f(&mut next);
        let file = AclsFile {
            version: 1,
            acls: next,
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("ACLs serialize");
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || crate::log::write_atomically(&dir, ACLS_FILE, &bytes))
            .await
            .expect("ACL file task panicked")?;
        *self.acls.write().expect("acls lock") = file.acls;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::{Pattern, Permission};

    fn read(principal: &str, topic: &str) -> Acl {
        Acl {
            principal: principal.into(),
            resource_type: ResourceType::Topic,
            pattern: Pattern::Literal(topic.into()),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    fn authorizer(dir: &Path, enabled: bool) -> Authorizer {
        let config = AuthorizationConfig {
            enabled,
            super_users: "User:root".into(),
            ..AuthorizationConfig::default()
        };
        Authorizer::new(&config, dir).unwrap()
    }

    fn caller(name: &str) -> Caller {
        Caller {
            principal: Principal::user(name),
            peer: Some("127.0.0.1:5000".parse().unwrap()),
        }
    }

    #[test]
    fn check_denies_the_first_resource_not_allowed_and_audits_it() {
        let dir = tempfile::tempdir().unwrap();
        let authz = authorizer(dir.path(), true);
        let acls: BTreeSet<Acl> = [read("User:alice", "a")].into();
        let alice = caller("alice");
        let check = |names: &[&str]| {
            authz.check(
                &acls,
                &alice,
                "Fetch",
                Operation::Read,
                ResourceType::Topic,
                names.iter().copied(),
            )
        };
        check(&["a", "a"]).unwrap();
        let status = check(&["a", "b", "c"]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "User:alice may not read topic \"b\": no ACL allows it"
        );
        authz
            .check(
                &acls,
                &caller("root"),
                "Fetch",
                Operation::Read,
                ResourceType::Topic,
                ["z"],
            )
            .unwrap();
        let line = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        let entry: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(line.lines().count(), 1);
        assert_eq!(entry["event"], "denied");
        assert_eq!(entry["principal"], "User:alice");
        assert_eq!(entry["peer"], "127.0.0.1:5000");
        assert_eq!(entry["rpc"], "Fetch");
        assert_eq!(entry["operation"], "read");
        assert_eq!(entry["resource_type"], "topic");
        assert_eq!(entry["resource"], "b");
        assert_eq!(entry["reason"], "no ACL allows it");
        assert!(entry.get("acls").is_none());
    }

    #[test]
    fn a_disabled_authorizer_allows_everything_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let authz = authorizer(dir.path(), false);
        let nobody = caller("nobody");
        authz
            .check(
                &BTreeSet::new(),
                &nobody,
                "Produce",
                Operation::Write,
                ResourceType::Topic,
                ["t"],
            )
            .unwrap();
        assert!(authz.permits(
            &BTreeSet::new(),
            &nobody,
            Operation::Admin,
            (ResourceType::Cluster, "cluster")
        ));
        assert!(!dir.path().join("audit.log").exists());
    }

    #[test]
    fn the_audit_log_rotates_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new(path.clone(), 100);
        let line = |n: u32| serde_json::json!({ "n": n, "pad": "x".repeat(33) });
        let len = serde_json::to_vec(&line(0)).unwrap().len() + 1;
        assert_eq!(len, 50);
        for n in 0..5 {
            log.write(&line(n));
        }
        // 2 lines fit in 100 bytes: lines 0-1 and 2-3 were rotated in turn; 4 is current.
        let current = std::fs::read_to_string(&path).unwrap();
        let previous = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
        assert_eq!(current.lines().count(), 1);
        assert!(current.starts_with("{\"n\":4,"));
        assert_eq!(previous.lines().count(), 2);
        assert!(previous.starts_with("{\"n\":2,"));
    }

    #[test]
    fn an_unwritable_audit_log_does_not_fail_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("missing/audit.log"), 1 << 20);
        log.write(&serde_json::json!({ "n": 1 }));
        assert!(!dir.path().join("missing").exists());
    }

    #[tokio::test]
    async fn local_acls_survive_a_reopen_and_refuse_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalAcls::open(dir.path()).unwrap();
        let (a, b) = (read("User:a", "t"), read("User:b", "t"));
        store.create(&[a.clone(), b.clone()]).await.unwrap();
        assert_eq!(
            store
                .delete(&[b.clone(), read("User:c", "t")])
                .await
                .unwrap(),
            [b]
        );
        let reopened = LocalAcls::open(dir.path()).unwrap();
        assert_eq!(reopened.with(Clone::clone), [a].into());

        let path = dir.path().join(ACLS_FILE);
        std::fs::write(&path, b"{\"version\":1,\"acls\":[{\"principal\":\"alice\"").unwrap();
        let err = LocalAcls::open(dir.path()).unwrap_err();
        assert!(matches!(err, AclStoreError::Damaged { .. }), "{err}");
        let bad = r#"{"version":1,"acls":[{"principal":"alice","resource_type":"topic","pattern":{"pattern":"literal","name":"t"},"operation":"read","permission":"allow"}]}"#;
        std::fs::write(&path, bad).unwrap();
        assert_eq!(
            LocalAcls::open(dir.path()).unwrap_err().to_string(),
            format!(
                "{} is damaged: principal \"alice\" is not User:<name> (User:* for everyone)",
                path.display()
            )
        );
        std::fs::write(&path, r#"{"version":2,"acls":[]}"#).unwrap();
        assert_eq!(
            LocalAcls::open(dir.path()).unwrap_err().to_string(),
            format!("{} is damaged: unknown version 2", path.display())
        );
    }
}
