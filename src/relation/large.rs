//! A membership of a large channel (docs/large-groups.md): its row holds its state as of its own
//! last_msg_seq ("counted to"); what arrived since is the channel row's, and derived here, the one
//! place the rule is written. Every function that returns a large membership returns these
//! values, so a caller cannot tell the mode from a row; every write to one first stores them.

/// The values of a conversation that a large channel's messages change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub last_msg_seq: i64,
    pub unread_count: i32,
    pub readed_to_msg_seq: i64,
    pub hidden: bool,
    /// PostgreSQL timestamptz (microseconds since 2000).
    pub updated_at: i64,
    pub version: i64,
}

impl Counted {
    /// What the badge counts of it: its unread messages, when it is listed and has any.
    pub fn badge(&self) -> Option<i64> {
        (!self.hidden && self.unread_count > 0).then_some(i64::from(self.unread_count))
    }
}

/// What a channel row says of its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub last_msg_seq: i64,
    pub updated_at: i64,
    pub version: i64,
}

/// The membership `row` as it stands with the channel at `channel`: as per member, the messages
/// after the row's last_msg_seq each add 1 past the read position, and bring a hidden
/// conversation back with the new messages only. Counted as a seq distance: exact for channels
/// whose seqs go up by one, as WuKongIM's and OpenIM's do.
pub fn derived(row: Counted, channel: Channel) -> Counted {
    if channel.last_msg_seq <= row.last_msg_seq {
        return row;
    }
    let new = channel.last_msg_seq - row.readed_to_msg_seq.max(row.last_msg_seq);
    let kept = if row.hidden { 0 } else { i64::from(row.unread_count) };
    Counted {
        last_msg_seq: channel.last_msg_seq,
        unread_count: (kept + new.max(0)).min(i64::from(i32::MAX)) as i32,
        readed_to_msg_seq: row.readed_to_msg_seq,
        hidden: false,
        updated_at: row.updated_at.max(channel.updated_at),
        version: row.version.max(channel.version),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    const ROW: Counted = Counted { last_msg_seq: 10, unread_count: 2, readed_to_msg_seq: 8, hidden: false, updated_at: 100, version: 7 };

    fn channel(last_msg_seq: i64) -> Channel {
        Channel { last_msg_seq, updated_at: 200, version: 9 }
    }

    #[test]
    fn nothing_new_leaves_the_row_as_it_is() {
        assert_eq!(derived(ROW, channel(10)), ROW);
        // A channel behind the row (the row was written per member after it): the row's.
        assert_eq!(derived(ROW, channel(4)), ROW);
    }

    #[test]
    fn each_new_message_past_the_read_position_counts_once() {
        let now = derived(ROW, channel(13));
        assert_eq!((now.last_msg_seq, now.unread_count, now.updated_at, now.version), (13, 5, 200, 9));
        // Read ahead of the row (a device read a message still arriving): only what is past it.
        let read_ahead = Counted { readed_to_msg_seq: 12, unread_count: 0, ..ROW };
        assert_eq!(derived(read_ahead, channel(13)).unread_count, 1);
        assert_eq!(derived(read_ahead, channel(12)).unread_count, 0);
    }

    #[test]
    fn a_hidden_conversation_comes_back_with_the_new_messages_only() {
        let hidden = Counted { hidden: true, ..ROW };
        assert_eq!(derived(hidden, channel(10)), hidden);
        let back = derived(hidden, channel(12));
        assert_eq!((back.hidden, back.unread_count), (false, 2));
    }

    #[test]
    fn the_newer_of_row_and_channel_dates_it() {
        let newer_row = Counted { updated_at: 300, version: 11, ..ROW };
        let now = derived(newer_row, channel(11));
        assert_eq!((now.updated_at, now.version), (300, 11));
    }

    #[test]
    fn an_unread_count_stops_at_the_integer_limit() {
        assert_eq!(derived(ROW, channel(i64::MAX)).unread_count, i32::MAX);
    }
}
