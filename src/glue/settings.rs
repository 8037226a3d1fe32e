//! The settings a DBA sets (postgresql.conf, ALTER DATABASE / ROLE ... SET, or SET), defined
//! when the library loads. A value set before it loads (not preloaded) is taken up then.

use std::ffi::CStr;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

use crate::input::batch_keys::MAX_BATCH_KEYS;

const LARGE_CHANNEL_MEMBERS_NAME: &CStr = c"pg_conversation.large_channel_members";

/// pg_conversation.large_channel_members: a message naming at least this many members makes
/// its per-member channel large (state/mode.rs). 0, the default: only
/// conversation_channel_make_large does (large channels count unread by seq distance, per member
/// counts arrivals: an update must not change what an application's seqs with gaps count).
static LARGE_CHANNEL_MEMBERS: GucSetting<i32> = GucSetting::<i32>::new(0);

pub fn init() {
    // Another copy of the library loaded in this backend (a second file: bench/builds.sh loads
    // two builds) defined it already: PostgreSQL refuses a second definition.
    // SAFETY: lookups by name that return NULL and 0 for a setting they do not know.
    let defined = unsafe {
        let known = !pg_sys::GetConfigOption(LARGE_CHANNEL_MEMBERS_NAME.as_ptr(), true, false).is_null();
        let flags = pg_sys::GetConfigOptionFlags(LARGE_CHANNEL_MEMBERS_NAME.as_ptr(), true);
        known && flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 == 0
    };
    if defined {
        return;
    }
    GucRegistry::define_int_guc(
        LARGE_CHANNEL_MEMBERS_NAME,
        c"A message naming at least this many members makes its channel large (0: never).",
        c"Large channels write two rows per message whatever their size; their members' unread counts are seq distances. See the README's \"Large channels\".",
        &LARGE_CHANNEL_MEMBERS,
        0,
        MAX_BATCH_KEYS as i32,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: called from _PG_init, after the extension's settings are defined: any other
    // pg_conversation.* setting is then a typo, reported as such.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"pg_conversation".as_ptr()) };
}

/// Whether a message naming `members` members makes its per-member channel large. Read by
/// name, as whichever copy of the library defined it keeps it.
pub fn makes_large(members: usize) -> bool {
    // SAFETY: the setting's value as text (defined in _PG_init), copied before anything else runs.
    let at = unsafe {
        let value = pg_sys::GetConfigOption(LARGE_CHANNEL_MEMBERS_NAME.as_ptr(), true, false);
        if value.is_null() {
            return false;
        }
        CStr::from_ptr(value).to_str().ok().and_then(|value| value.parse::<usize>().ok()).unwrap_or(0)
    };
    at > 0 && members >= at
}
