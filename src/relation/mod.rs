//! The conversation table as this backend knows it (`catalog`, with `citus` for where a
//! distributed key lives), read directly through an index (`probe`), its rows handed back as the
//! declared type (`result_row`), and the SQL statements run on it (`statements`). `entry` is the
//! one way a SQL function reaches it.

pub mod catalog;
pub mod citus;
pub mod entry;
pub mod probe;
pub mod result_row;
pub mod statements;
pub mod xid;
