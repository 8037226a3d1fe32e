//! The extension's tables as the functions read them: conversations, large channels, departures.
//! The conversation table: what it is (`table`, read and checked from its relation), as this
//! backend knows it (`catalog`, found under a lock and remembered), where a key's row lives
//! (`placement`, with `citus` for a distributed key), whether its rows are stamped (`stamp_catalog`),
//! read directly through an index (`probe`), its rows handed back as the declared type
//! (`result_row`), and the SQL statements run on it (`statements`). `entry` is the one way a SQL
//! function reaches it. Large channels: their table (`channel_table`), a call's many rows of it
//! (`channel_rows`, which remembers where each was found), and a membership read as it stands
//! (`membership`, by the rule in `large`). The table of conversations that left a list
//! (`departure_table`). What is remembered of them is forgotten through glue's `invalidation`.

pub mod catalog;
pub mod channel_rows;
pub mod channel_table;
pub mod citus;
pub mod departure_table;
pub mod entry;
pub mod large;
pub mod membership;
pub mod placement;
pub mod probe;
pub mod result_row;
pub mod stamp_catalog;
pub mod statements;
pub mod table;
pub mod xid;
