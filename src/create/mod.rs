//! One conversation per key: find it (`find`), or lock the key (`lock`), look again and insert
//! (`insert`), as `get_or_create` does; many keys at once (`batch`); a key checked without
//! creating it (`key_check`).

pub mod batch;
pub mod find;
pub mod get_or_create;
pub mod insert;
pub mod key_check;
pub mod lock;
