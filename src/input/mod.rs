//! Input, before anything of the server is touched: the key and its limits, a batch of keys
//! folded and ordered, a batch given as JSON. Pure Rust, unit-tested without PostgreSQL.

pub mod batch_json;
pub mod batch_keys;
pub mod key;
