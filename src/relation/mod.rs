//! The conversation table as this backend knows it (`catalog`, with `citus` for where a
//! distributed key lives), read directly through an index (`probe`), its rows handed back as the
//! declared type (`result_row`), and the SQL statements run on it (`statements`). `entry` is the
//! one way a SQL function reaches it. Beside it, the table of conversations that left a list
//! (`departure_table`).

pub mod catalog;
pub mod citus;
pub mod departure_table;
pub mod entry;
pub mod probe;
pub mod result_row;
pub mod statements;
pub mod xid;
