//! Kind knowledge: the catalogue of served resources, typed round trips through
//! `k8s-openapi`, defaulting, validation, Table columns and field selectors. Nothing
//! here does I/O; the API server calls it.

pub mod convert;
pub mod defaults;
pub mod fields;
pub mod resources;
pub mod table;
pub mod typed;
pub mod validation;
