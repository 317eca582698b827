//! Authorization as the services ask for it: the ACLs in force on this broker (the cluster
//! metadata's, or [`LocalAcls`](crate::security::LocalAcls) alone) checked by the
//! [`Authorizer`](crate::security::Authorizer).

use std::collections::BTreeSet;

use tonic::Status;

use super::BrokerContext;
use crate::security::Caller;
use crate::security::acl::{Acl, CLUSTER, Operation, ResourceType};

impl BrokerContext {
    /// Runs `f` on the ACLs in force here.
    pub fn with_acls<R>(&self, f: impl FnOnce(&BTreeSet<Acl>) -> R) -> R {
        match (&self.cluster, &self.local_acls) {
            (Some(cluster), _) => cluster.controller().with_metadata(|m| f(&m.acls)),
            (None, Some(local)) => local.with(f),
            (None, None) => f(&BTreeSet::new()),
        }
    }

    /// Ok when `caller` may do `operation` on each resource of `resource_type` in `names`;
    /// otherwise `PERMISSION_DENIED` for the first it may not (counted and audited).
    pub fn authorize<'a>(
        &self,
        caller: &Caller,
        rpc: &'static str,
        operation: Operation,
        resource_type: ResourceType,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Status> {
        if !self.authorizer.enabled() {
            return Ok(());
        }
        self.with_acls(|acls| {
            (self.authorizer).check(acls, caller, rpc, operation, resource_type, names)
        })
    }

    /// [`BrokerContext::authorize`] for an operation on the cluster.
    pub fn authorize_cluster(
        &self,
        caller: &Caller,
        rpc: &'static str,
        operation: Operation,
    ) -> Result<(), Status> {
        self.authorize(caller, rpc, operation, ResourceType::Cluster, [CLUSTER])
    }

    /// Whether `caller` may do `operation` on one resource; records nothing.
    pub fn permits(
        &self,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        !self.authorizer.enabled()
            || self.with_acls(|acls| {
                (self.authorizer).permits(acls, caller, operation, (resource_type, name))
            })
    }

    /// The items of `items` whose resource (named by `name`) `caller` may `Describe`: what a
    /// listing shows.
    pub fn describable<T>(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        items: Vec<T>,
        name: impl Fn(&T) -> &str,
    ) -> Vec<T> {
        if !self.authorizer.enabled() {
            return items;
        }
        self.with_acls(|acls| {
            (items.into_iter())
                .filter(|item| {
                    let resource = (resource_type, name(item));
                    (self.authorizer).permits(acls, caller, Operation::Describe, resource)
                })
                .collect()
        })
    }
}
