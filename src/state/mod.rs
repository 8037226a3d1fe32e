//! What happens to a conversation after it exists: a message reached it (`message`; a large
//! channel's, `message_large`), a user read up to a seq or cleared it (`read_state`), a user hid
//! it (`hide`); each first brings a membership of a large channel up to its channel
//! (`materialize`). A channel becomes large or per member again (`mode`), under its lock
//! (`channel_lock`).

pub mod channel_lock;
pub mod hide;
pub mod materialize;
pub mod message;
pub mod message_large;
pub mod mode;
pub mod read_state;
