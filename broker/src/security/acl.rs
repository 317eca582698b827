//! Access control lists: Kafka's model, evaluated by [`Acls::authorize`].
//!
//! An ACL binds a principal (`User:alice`, or `User:*` for every principal) to an
//! [`Operation`] on resources of one [`ResourceType`] that a [`Pattern`] selects: one name
//! (literal), every name starting with a prefix (prefixed), or every name (the literal `*`).
//! It allows or denies.
//!
//! The decision for a principal, an operation and a resource:
//! 1. a super-user is allowed everything;
//! 2. any matching DENY denies;
//! 3. else any matching ALLOW allows;
//! 4. else it is denied: once authorization is on, nothing is allowed by default.
//!
//! An ACL for [`Operation::All`] matches every operation. One that allows `Read`, `Write`,
//! `Delete` or `AlterConfigs` also allows `Describe` on the same resources (as in Kafka); a
//! DENY of them does not deny `Describe`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::auth::Principal;

/// What an ACL protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    /// A topic, by name.
    Topic,
    /// A consumer group, by id.
    Group,
    /// The cluster; its one resource is named [`CLUSTER`].
    Cluster,
}

/// The name of the cluster resource.
pub const CLUSTER: &str = "cluster";

/// What a principal does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Every operation (in an ACL only).
    All,
    /// Fetch from a topic; join, commit to and fetch offsets of a group.
    Read,
    /// Produce to a topic.
    Write,
    /// Create a topic.
    Create,
    /// Delete a topic.
    Delete,
    /// See a topic or group in metadata, listings and descriptions.
    Describe,
    /// Change a topic's configs or partition count.
    AlterConfigs,
    /// Administer the cluster: leader elections, reassignments, ACLs.
    Admin,
    /// What brokers do to each other: the controller quorum, heartbeats, replica fetches.
    ClusterAction,
}

/// Whether a matching ACL allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Allows, unless a DENY matches too.
    Allow,
    /// Denies, whatever else matches.
    Deny,
}

/// Which names of a resource type an ACL covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "pattern", content = "name", rename_all = "lowercase")]
pub enum Pattern {
    /// Exactly this name; `*` is every name.
    Literal(String),
    /// Every name that starts with this (non-empty) prefix.
    Prefixed(String),
}

impl Pattern {
    /// Whether `name` is one of the names this pattern selects.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Literal(literal) => literal == "*" || literal == name,
            Pattern::Prefixed(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// One access control entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Acl {
    /// `User:<name>`, or `User:*` for every principal.
    pub principal: String,
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// Which resources of that kind.
    pub pattern: Pattern,
    /// The operation.
    pub operation: Operation,
    /// Allow or deny.
    pub permission: Permission,
}

/// Why an ACL cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The principal is not `User:<name>`.
    #[error("principal {0:?} is not User:<name> (User:* for everyone)")]
    Principal(String),
    /// A resource name or prefix that selects nothing or is too long.
    #[error("{what} {name:?} is invalid: {reason}")]
    Name {
        /// `topic name`, `group prefix`, ...
        what: String,
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The operation does not apply to the resource type.
    #[error(
        "operation {operation} does not apply to {resource_type} resources (it takes {allowed})"
    )]
    Operation {
        /// The operation.
        operation: Operation,
        /// The resource type.
        resource_type: ResourceType,
        /// The operations it takes.
        allowed: String,
    },
}

/// Longest resource name or prefix an ACL takes (a topic name's limit is 249).
pub const MAX_NAME_LEN: usize = 255;

impl ResourceType {
    /// The operations an ACL on this resource type may name.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[All, Read, Write, Create, Delete, Describe, AlterConfigs],
            ResourceType::Group => &[All, Read, Describe, Delete],
            ResourceType::Cluster => &[All, Admin, ClusterAction, Create, Describe],
        }
    }
}

impl Acl {
    /// Checks the principal form, the name and that the operation applies.
    pub fn validate(&self) -> Result<(), AclError> {
        match self.principal.strip_prefix("User:") {
            Some(name) if !name.is_empty() && name.len() <= MAX_NAME_LEN => {}
            _ => return Err(AclError::Principal(self.principal.clone())),
        }
        let (kind, name) = match &self.pattern {
            Pattern::Literal(name) => ("name", name),
            Pattern::Prefixed(prefix) => ("prefix", prefix),
        };
        let what = format!("{} {kind}", self.resource_type);
        let bad = |reason| AclError::Name {
            what: what.clone(),
            name: name.clone(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("it is longer than 255 bytes"));
        }
        if self.resource_type == ResourceType::Cluster
            && self.pattern != Pattern::Literal(CLUSTER.into())
            && self.pattern != Pattern::Literal("*".into())
        {
            return Err(bad("the cluster resource is the literal name \"cluster\""));
        }
        if !self.resource_type.operations().contains(&self.operation) {
            return Err(AclError::Operation {
                operation: self.operation,
                resource_type: self.resource_type,
                allowed: (self.resource_type.operations().iter())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }

    fn covers(
        &self,
        principal: &Principal,
        operation: Operation,
        resource: (ResourceType, &str),
    ) -> bool {
        (self.principal == principal.as_str() || self.principal == "User:*")
            && self.resource_type == resource.0
            && self.pattern.matches(resource.1)
            && (self.operation == Operation::All
                || self.operation == operation
                || (operation == Operation::Describe
                    && self.permission == Permission::Allow
                    && matches!(
                        self.operation,
                        Operation::Read
                            | Operation::Write
                            | Operation::Delete
                            | Operation::AlterConfigs
                    )))
    }
}

/// The decision for `principal` doing `operation` on `resource` (its type and name), with
/// `super_users` allowed everything: [`Acls::authorize`] over sets held elsewhere (the
/// cluster metadata's).
pub fn decide(
    super_users: &BTreeSet<String>,
    acls: &BTreeSet<Acl>,
    principal: &Principal,
    operation: Operation,
    resource: (ResourceType, &str),
) -> Decision {
    if super_users.contains(principal.as_str()) {
        return Decision::SuperUser;
    }
    let mut allowed = false;
    for acl in acls {
        if acl.covers(principal, operation, resource) {
            match acl.permission {
                Permission::Deny => return Decision::Denied,
                Permission::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::NoMatch
    }
}

/// Whether `principal` is a super-user or may do `operation` on some resource of
/// `resource_type` (Kafka's `authorizeByResourceType`, its test for an idempotent producer,
/// which needs Write on some topic): some ALLOW selects names that no DENY covers whole. A
/// DENY of `*` covers every name; a prefixed DENY covers the names and prefixes it starts.
pub fn allows_some(
    super_users: &BTreeSet<String>,
    acls: &BTreeSet<Acl>,
    principal: &Principal,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    if super_users.contains(principal.as_str()) {
        return true;
    }
    let applies = |acl: &&Acl, permission| {
        acl.permission == permission
            && (acl.principal == principal.as_str() || acl.principal == "User:*")
            && acl.resource_type == resource_type
            && (acl.operation == Operation::All || acl.operation == operation)
    };
    let denies: Vec<&Pattern> = (acls.iter())
        .filter(|a| applies(a, Permission::Deny))
        .map(|a| &a.pattern)
        .collect();
    let covered = |allowed: &Pattern| {
        denies.iter().any(|denied| match (denied, allowed) {
            (Pattern::Literal(d), _) if d == "*" => true,
            (Pattern::Literal(d), Pattern::Literal(a)) => d == a,
            (Pattern::Prefixed(d), Pattern::Literal(a)) => a != "*" && a.starts_with(d.as_str()),
            (Pattern::Prefixed(d), Pattern::Prefixed(a)) => a.starts_with(d.as_str()),
            (Pattern::Literal(_), Pattern::Prefixed(_)) => false,
        })
    };
    (acls.iter())
        .filter(|a| applies(a, Permission::Allow))
        .any(|a| !covered(&a.pattern))
}

/// The outcome of [`Acls::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A super-user.
    SuperUser,
    /// An ALLOW matched and no DENY did.
    Allowed,
    /// A DENY matched.
    Denied,
    /// Nothing matched: denied by default.
    NoMatch,
}

impl Decision {
    /// True when the operation may go ahead.
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::SuperUser | Decision::Allowed)
    }
}

/// The ACLs in force and the super-users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acls {
    super_users: BTreeSet<String>,
    acls: BTreeSet<Acl>,
}

impl Acls {
    /// `acls` with `super_users` (`User:<name>` each) allowed everything.
    pub fn new(
        super_users: impl IntoIterator<Item = String>,
        acls: impl IntoIterator<Item = Acl>,
    ) -> Acls {
        Acls {
            super_users: super_users.into_iter().collect(),
            acls: acls.into_iter().collect(),
        }
    }

    /// The decision for `principal` doing `operation` on the resource named `name` of type
    /// `resource_type`.
    pub fn authorize(
        &self,
        principal: &Principal,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        decide(
            &self.super_users,
            &self.acls,
            principal,
            operation,
            (resource_type, name),
        )
    }

    /// Every ACL, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = &Acl> {
        self.acls.iter()
    }
}

macro_rules! names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(<$ty>::$variant => $name),+ })
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().replace('-', "_").as_str() {
                    $($name => Ok(<$ty>::$variant),)+
                    _ => Err(format!(
                        "{s:?} is not one of {}",
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
    };
}

names!(ResourceType { Topic => "topic", Group => "group", Cluster => "cluster" });
names!(Operation {
    All => "all",
    Read => "read",
    Write => "write",
    Create => "create",
    Delete => "delete",
    Describe => "describe",
    AlterConfigs => "alter_configs",
    Admin => "admin",
    ClusterAction => "cluster_action",
});
names!(Permission { Allow => "allow", Deny => "deny" });

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        principal: &str,
        rt: ResourceType,
        pattern: Pattern,
        op: Operation,
        p: Permission,
    ) -> Acl {
        Acl {
            principal: principal.into(),
            resource_type: rt,
            pattern,
            operation: op,
            permission: p,
        }
    }

    fn lit(name: &str) -> Pattern {
        Pattern::Literal(name.into())
    }

    fn prefix(name: &str) -> Pattern {
        Pattern::Prefixed(name.into())
    }

    use Operation::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn nothing_is_allowed_by_default_and_super_users_everything() {
        let acls = Acls::new(["User:admin".to_string()], []);
        let alice = Principal::user("alice");
        assert_eq!(acls.authorize(&alice, Read, Topic, "t"), Decision::NoMatch);
        assert!(!acls.authorize(&alice, Read, Topic, "t").is_allowed());
        let admin = Principal::user("admin");
        assert_eq!(
            acls.authorize(&admin, ClusterAction, Cluster, CLUSTER),
            Decision::SuperUser
        );
        assert_eq!(
            acls.authorize(&Principal::anonymous(), Describe, Topic, "t"),
            Decision::NoMatch
        );
    }

    #[test]
    fn allows_some_asks_for_an_allow_of_the_operation_on_any_name() {
        let supers: BTreeSet<String> = ["User:admin".to_string()].into();
        let acls: BTreeSet<Acl> = [
            acl("User:a", Topic, Pattern::Prefixed("x".into()), Write, Allow),
            acl("User:b", Topic, lit("t"), Read, Allow),
            acl("User:c", Topic, lit("t"), Write, Deny),
            acl("User:*", Group, lit("g"), All, Allow),
        ]
        .into();
        let some = |who: &str, op, rt| allows_some(&supers, &acls, &Principal::user(who), op, rt);
        assert!(some("a", Write, Topic));
        assert!(!some("b", Write, Topic));
        assert!(!some("c", Write, Topic));
        assert!(some("admin", Write, Topic));
        assert!(some("anyone", Read, Group));
        assert!(!some("anyone", Read, Topic));
        // DENYs weigh in when they cover every name an ALLOW selects.
        let with = |extra: Vec<Acl>| -> BTreeSet<Acl> {
            let mut set: BTreeSet<Acl> = [acl(
                "User:d",
                Topic,
                Pattern::Prefixed("logs-".into()),
                Write,
                Allow,
            )]
            .into();
            set.extend(extra);
            set
        };
        let d = Principal::user("d");
        let some_of = |set: &BTreeSet<Acl>| allows_some(&supers, set, &d, Write, Topic);
        assert!(some_of(&with(vec![])));
        let all = acl("User:d", Topic, lit("*"), Write, Deny);
        assert!(!some_of(&with(vec![all])));
        let wider = acl("User:*", Topic, Pattern::Prefixed("logs".into()), All, Deny);
        assert!(!some_of(&with(vec![wider])));
        let narrower = acl(
            "User:d",
            Topic,
            Pattern::Prefixed("logs-web".into()),
            Write,
            Deny,
        );
        assert!(some_of(&with(vec![narrower])));
        let one = acl("User:d", Topic, lit("logs-1"), Write, Deny);
        assert!(some_of(&with(vec![one.clone()])));
        let literal = acl("User:d", Topic, lit("logs-1"), Write, Allow);
        let only = [literal.clone(), one].into();
        assert!(!allows_some(&supers, &only, &d, Write, Topic));
        let other_op = acl("User:d", Topic, lit("*"), Read, Deny);
        assert!(some_of(&with(vec![other_op])));
    }

    #[test]
    fn literal_prefixed_and_wildcard_patterns_select_their_names() {
        let acls = Acls::new(
            [],
            [
                acl("User:alice", Topic, lit("orders"), Write, Allow),
                acl("User:alice", Topic, prefix("logs."), Read, Allow),
                acl("User:*", Topic, lit("*"), Describe, Allow),
            ],
        );
        let alice = Principal::user("alice");
        let bob = Principal::user("bob");
        assert_eq!(
            acls.authorize(&alice, Write, Topic, "orders"),
            Decision::Allowed
        );
        assert_eq!(
            acls.authorize(&alice, Write, Topic, "orders2"),
            Decision::NoMatch
        );
        assert_eq!(
            acls.authorize(&alice, Read, Topic, "logs.app"),
            Decision::Allowed
        );
        assert_eq!(
            acls.authorize(&alice, Read, Topic, "logs"),
            Decision::NoMatch
        );
        assert_eq!(
            acls.authorize(&alice, Write, Topic, "logs.app"),
            Decision::NoMatch
        );
        assert_eq!(
            acls.authorize(&bob, Describe, Topic, "anything"),
            Decision::Allowed
        );
        assert_eq!(
            acls.authorize(&bob, Read, Topic, "orders"),
            Decision::NoMatch
        );
        // A topic ACL says nothing about a group of the same name.
        assert_eq!(
            acls.authorize(&alice, Read, Group, "logs.app"),
            Decision::NoMatch
        );
    }

    #[test]
    fn deny_beats_allow_and_all_covers_every_operation() {
        let acls = Acls::new(
            [],
            [
                acl("User:*", Topic, prefix("pay"), All, Allow),
                acl("User:mallory", Topic, lit("payments"), Read, Deny),
            ],
        );
        let mallory = Principal::user("mallory");
        assert_eq!(
            acls.authorize(&mallory, Read, Topic, "payments"),
            Decision::Denied
        );
        assert_eq!(
            acls.authorize(&mallory, Write, Topic, "payments"),
            Decision::Allowed
        );
        assert_eq!(
            acls.authorize(&mallory, Read, Topic, "payroll"),
            Decision::Allowed
        );
        assert_eq!(
            acls.authorize(&Principal::user("x"), Delete, Topic, "payments"),
            Decision::Allowed
        );
    }

    #[test]
    fn describe_is_implied_by_an_allowed_read_write_delete_or_alter_configs() {
        for op in [Read, Write, Delete, AlterConfigs] {
            let acls = Acls::new([], [acl("User:a", Topic, lit("t"), op, Allow)]);
            assert_eq!(
                acls.authorize(&Principal::user("a"), Describe, Topic, "t"),
                Decision::Allowed,
                "{op}"
            );
        }
        let acls = Acls::new([], [acl("User:a", Topic, lit("t"), Create, Allow)]);
        assert_eq!(
            acls.authorize(&Principal::user("a"), Describe, Topic, "t"),
            Decision::NoMatch
        );
        // A denied read does not deny describe.
        let acls = Acls::new(
            [],
            [
                acl("User:a", Topic, lit("t"), Read, Deny),
                acl("User:a", Topic, lit("t"), Describe, Allow),
            ],
        );
        assert_eq!(
            acls.authorize(&Principal::user("a"), Describe, Topic, "t"),
            Decision::Allowed
        );
    }

    #[test]
    fn invalid_acls_are_refused_naming_the_part() {
        let ok = acl("User:a", Topic, lit("t"), Read, Allow);
        ok.validate().unwrap();
        let with = |f: &dyn Fn(&mut Acl)| {
            let mut a = ok.clone();
            f(&mut a);
            a.validate().unwrap_err().to_string()
        };
        assert_eq!(
            with(&|a| a.principal = "alice".into()),
            "principal \"alice\" is not User:<name> (User:* for everyone)"
        );
        assert_eq!(
            with(&|a| a.principal = "User:".into()),
            "principal \"User:\" is not User:<name> (User:* for everyone)"
        );
        assert_eq!(
            with(&|a| a.pattern = prefix("")),
            "topic prefix \"\" is invalid: it is empty"
        );
        let long = "x".repeat(256);
        assert_eq!(
            with(&|a| a.pattern = lit(&long)),
            format!("topic name {long:?} is invalid: it is longer than 255 bytes")
        );
        assert_eq!(
            with(&|a| a.operation = Admin),
            "operation admin does not apply to topic resources (it takes all, read, write, create, delete, describe, alter_configs)"
        );
        assert_eq!(
            with(&|a| {
                a.resource_type = Cluster;
                a.pattern = lit("prod");
                a.operation = Admin;
            }),
            "cluster name \"prod\" is invalid: the cluster resource is the literal name \"cluster\""
        );
        assert_eq!(
            with(&|a| {
                a.resource_type = Group;
                a.operation = Write;
            }),
            "operation write does not apply to group resources (it takes all, read, describe, delete)"
        );
    }

    #[test]
    fn names_parse_in_either_case_and_with_dashes() {
        assert_eq!("alter-configs".parse::<Operation>(), Ok(AlterConfigs));
        assert_eq!("CLUSTER_ACTION".parse::<Operation>(), Ok(ClusterAction));
        assert_eq!("Topic".parse::<ResourceType>(), Ok(Topic));
        assert_eq!("deny".parse::<Permission>(), Ok(Deny));
        assert_eq!(
            "grant".parse::<Permission>(),
            Err("\"grant\" is not one of allow, deny".to_string())
        );
        assert_eq!(AlterConfigs.to_string(), "alter_configs");
    }

    #[test]
    fn acls_round_trip_through_json() {
        let a = acl("User:a", Topic, prefix("p."), AlterConfigs, Deny);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"principal":"User:a","resource_type":"topic","pattern":{"pattern":"prefixed","name":"p."},"operation":"alter_configs","permission":"deny"}"#
        );
        assert_eq!(serde_json::from_str::<Acl>(&text).unwrap(), a);
    }
}
