//! The gRPC services: [`BrokerService`] (data plane) and [`AdminService`] (topics), plus the
//! one mapping from domain errors to the wire's `ErrorCode`.

mod admin_service;
mod broker_service;
mod error_code;
mod groups_service;

pub use admin_service::AdminService;
pub use broker_service::BrokerService;
pub use error_code::{admin_error_code, log_error_code};
pub(crate) use groups_service::EXPIRY_INTERVAL;
pub use groups_service::GroupsService;
