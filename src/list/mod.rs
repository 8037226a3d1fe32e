//! The conversation list: every change stamped with its transaction (`stamp`, `version`), positions made of
//! snapshots and a point in the cluster's history (`position`, `history`), the list and unread totals (`reads`), read straight from the list
//! indexes where they are the extension's (`list_scan`), and the conversations that left a list (`departures`).

pub mod departures;
pub mod history;
pub mod list_scan;
pub mod own_writes;
pub mod position;
pub mod reads;
pub mod stamp;
pub mod version;
