//! Integration tests of berth-net against the real kernel (root required;
//! with CI=true a missing privilege fails instead of skipping).

mod common;
mod errors;
mod links;
mod namespaces;
mod topology;
