//! What happens to a conversation after it exists: a message reached it (`message`), a user read
//! up to a seq or cleared it (`read_state`), a user hid it (`hide`); each first brings a
//! membership of a large channel up to its channel (`materialize`).

pub mod hide;
pub mod materialize;
pub mod message;
pub mod read_state;
