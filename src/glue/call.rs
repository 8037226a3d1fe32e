//! The one way the extension's SQL functions are declared: a V1 C function, declared by hand in
//! sql/ where a DBA reads it, and written here with `sql_function!`.
//!
//! Why not pgrx's `#[pg_extern]`: the functions need what its argument conversions hide. Text is
//! read as the bytes PostgreSQL stores, in the database's encoding, never converted to a Rust
//! `str` (that needs UTF-8, and a LATIN1 or SQL_ASCII database is not). Arrays and jsonb are
//! measured before their elements are read, so a huge input is refused in constant memory. A
//! returned row is built as the type the function is declared to return. `Call` gives each of
//! those, and nothing else.

use std::cell::RefCell;

use pgrx::pg_sys;

use crate::glue::errors;
use crate::glue::guard;
use crate::glue::invalidation;
use crate::input::key::{ConversationKey, KeyError, MAX_ID_BYTES};

/// Declares `fn name(call) { ... }` as the V1 C function `name`: its finfo record, the guard that
/// turns a Rust panic into an ERROR, and a `Call` for the body. The body returns the result datum.
macro_rules! sql_function {
    ($(#[$attr:meta])* fn $name:ident($call:ident) $body:block) => {
        const _: () = {
            #[export_name = concat!("pg_finfo_", stringify!($name))]
            extern "C" fn finfo() -> &'static pgrx::pg_sys::Pg_finfo_record {
                const V1: pgrx::pg_sys::Pg_finfo_record = pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }
        };
        $(#[$attr])*
        ///
        /// # Safety
        /// Called by PostgreSQL's function manager, as a V1 function, with a valid fcinfo.
        #[pgrx::pg_guard]
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pgrx::pg_sys::FunctionCallInfo) -> pgrx::pg_sys::Datum {
            // SAFETY: PostgreSQL calls a V1 function with a valid fcinfo.
            let $call = &unsafe { $crate::glue::call::Call::new(fcinfo) };
            $body
        }
    };
}
pub(crate) use sql_function;

/// One call of a SQL function: its arguments, its function, its result.
pub struct Call {
    fcinfo: pg_sys::FunctionCallInfo,
}

/// Why an array argument was refused before its elements were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayError {
    NotOneDimensional {
        dimensions: i32,
    },
    TooMany {
        count: usize,
    },
    /// More bytes than `limit` keys can take (measured before the array is read).
    TooLarge {
        bytes: usize,
        limit: usize,
    },
}

impl Call {
    /// # Safety
    /// `fcinfo` is the valid call info PostgreSQL passed to a V1 function.
    pub unsafe fn new(fcinfo: pg_sys::FunctionCallInfo) -> Call {
        Call { fcinfo }
    }

    pub fn fcinfo(&self) -> pg_sys::FunctionCallInfo {
        self.fcinfo
    }

    /// The n-th argument's datum, None when it is NULL.
    pub fn datum(&self, n: usize) -> Option<pg_sys::Datum> {
        // SAFETY: n is below the function's declared argument count at every call site (the
        // SQL declarations in sql/ fix it).
        unsafe {
            assert!(n < (*self.fcinfo).nargs as usize, "argument {n} of a function with fewer");
            let arg = *(*self.fcinfo).args.as_ptr().add(n);
            (!arg.isnull).then_some(arg.value)
        }
    }

    /// A text (or varchar) argument as its bytes in the database encoding, detoasted whole: only
    /// for arguments whose size was measured first (`text_at_most`, `id_text`).
    fn text(&self, n: usize) -> Option<&[u8]> {
        // SAFETY: the argument is a varlena of the text family; the detoasted copy lives in the
        // call's memory context, which outlives this call's borrow.
        self.datum(n).map(|datum| unsafe { varlena_bytes(datum) })
    }

    /// A text argument of at most `limit` bytes, measured before it is detoasted: Err(bytes) when
    /// longer.
    pub fn text_at_most(&self, n: usize, limit: usize) -> Option<Result<&[u8], usize>> {
        let datum = self.datum(n)?;
        // SAFETY: a varlena of the text family; its size comes from its header (or its toast
        // pointer), without reading the value.
        let bytes = unsafe { raw_size(datum) } - pg_sys::VARHDRSZ;
        if bytes > limit {
            return Some(Err(bytes));
        }
        self.text(n).map(Ok)
    }

    /// A uid or channel_id argument (named `argument` in errors): one longer than a key may be is
    /// refused by its size alone (22001), never read.
    pub fn id_text(&self, n: usize, argument: &'static str) -> Option<&[u8]> {
        match self.text_at_most(n, MAX_ID_BYTES)? {
            Ok(bytes) => Some(bytes),
            Err(bytes) => errors::invalid_key(KeyError::TooLong { argument, bytes }),
        }
    }

    pub fn int32(&self, n: usize) -> Option<i32> {
        self.datum(n).map(|datum| datum.value() as i32)
    }

    pub fn int64(&self, n: usize) -> Option<i64> {
        self.datum(n).map(|datum| datum.value() as i64)
    }

    /// A text[] argument's elements (None for a NULL element), after checking its dimensions and
    /// its size from the array header alone: at most `limit` elements are ever read.
    pub fn text_array(&self, n: usize, limit: usize) -> Option<Result<Vec<Option<&[u8]>>, ArrayError>> {
        let datum = self.datum(n)?;
        // Measured before it is detoasted: more bytes than `limit` keys can take is refused
        // by its size alone.
        // SAFETY: a varlena; its size comes from its header or toast pointer.
        let bytes = unsafe { raw_size(datum) };
        if bytes > max_text_array_bytes(limit) {
            return Some(Err(ArrayError::TooLarge { bytes, limit: max_text_array_bytes(limit) }));
        }
        // SAFETY: a text[] argument; detoasted once into the call's context, so the elements
        // deconstruct_array points at live as long as the call.
        unsafe {
            let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let dimensions = (*array).ndim;
            if dimensions > 1 {
                return Some(Err(ArrayError::NotOneDimensional { dimensions }));
            }
            let dims = (array as *mut u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *mut i32;
            let count = pg_sys::ArrayGetNItems(dimensions, dims) as usize;
            if count > limit {
                return Some(Err(ArrayError::TooMany { count }));
            }
            Some(Ok(text_elements(array)))
        }
    }

    /// The key in arguments `first`, `first + 1` and `first + 2` (uid, channel_id, channel_type),
    /// validated: bad input is refused here, before anything is read or written.
    pub fn key(&self, first: usize) -> ConversationKey<'_> {
        let uid = self.id_text(first, "uid");
        let channel_id = self.id_text(first + 1, "channel_id");
        ConversationKey::validate(uid, channel_id, self.int32(first + 2).map(i64::from)).unwrap_or_else(|error| errors::invalid_key(error))
    }

    /// The function's own OID.
    pub fn function(&self) -> pg_sys::Oid {
        // SAFETY: flinfo is set for every fmgr call.
        unsafe { (*(*self.fcinfo).flinfo).fn_oid }
    }

    /// The schema of the called function: the extension's schema (it is not relocatable).
    /// Remembered per function (every call asks; a miss calls the stamp trigger too), until
    /// pg_proc changes.
    pub fn schema(&self) -> pg_sys::Oid {
        let function = self.function();
        let known = SCHEMAS.with_borrow(|schemas| schemas.iter().find(|(known, _)| *known == function).map(|&(_, schema)| schema));
        if let Some(schema) = known {
            return schema;
        }
        invalidation::on_syscache_change(pg_sys::SysCacheIdentifier::PROCOID, forget_schemas);
        // SAFETY: a syscache lookup; InvalidOid if the function was dropped under us.
        let schema = unsafe { pg_sys::get_func_namespace(function) };
        if schema == pg_sys::InvalidOid {
            errors::extension_dropped();
        }
        SCHEMAS.with_borrow_mut(|schemas| {
            // The extension declares fewer functions than this; a bound all the same.
            if schemas.len() >= MAX_SCHEMAS_KEPT {
                schemas.clear();
            }
            schemas.push((function, schema));
        });
        schema
    }

    /// Whether the result was set to NULL (`return_null`).
    pub fn is_null_result(&self) -> bool {
        // SAFETY: fcinfo is the call's.
        unsafe { (*self.fcinfo).isnull }
    }

    /// A NULL result.
    pub fn return_null(&self) -> pg_sys::Datum {
        // SAFETY: fcinfo is the call's.
        unsafe { (*self.fcinfo).isnull = true };
        pg_sys::Datum::from(0)
    }

    /// A one-row result of the function's declared record type (OUT parameters).
    pub fn record_result(&self, values: &[pg_sys::Datum], nulls: &[bool]) -> pg_sys::Datum {
        // SAFETY: the function is declared with OUT parameters, one per value; the tuple is
        // formed in the call's memory context.
        unsafe {
            let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
            if pg_sys::get_call_result_type(self.fcinfo, std::ptr::null_mut(), &mut desc) != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE {
                errors::extension_dropped();
            }
            let desc = pg_sys::BlessTupleDesc(desc);
            assert_eq!(values.len(), (*desc).natts as usize);
            let tuple = pg_sys::heap_form_tuple(desc, values.as_ptr().cast_mut(), nulls.as_ptr().cast_mut());
            pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
        }
    }

    /// Sets up a set-returning call in materialize mode and returns where its rows go.
    pub fn materialize(&self) -> Materialized {
        // SAFETY: the function is declared to return a set of rows; InitMaterializedSRF checks
        // that the caller accepts materialize mode and raises a normal ERROR if not.
        unsafe {
            pg_sys::InitMaterializedSRF(self.fcinfo, 0);
            let info = (*self.fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            Materialized { store: (*info).setResult, desc: (*info).setDesc }
        }
    }
}

thread_local! {
    /// The functions called so far and their schemas (`Call::schema`).
    static SCHEMAS: RefCell<Vec<(pg_sys::Oid, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
}

const MAX_SCHEMAS_KEPT: usize = 64;

/// pg_proc changed (a function dropped, moved or created): a schema remembered may be stale.
///
/// # Safety
/// Called by PostgreSQL as a syscache invalidation callback (registered in `Call::schema`).
unsafe extern "C-unwind" fn forget_schemas(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    SCHEMAS.with_borrow_mut(Vec::clear);
}

/// A READ ONLY transaction or a hot standby: refuse before any lock or write, with our own 25006.
pub fn refuse_writes_if_read_only(function: &str) {
    // SAFETY: a plain global of the backend, set at transaction start (true during recovery).
    if unsafe { pg_sys::XactReadOnly } {
        errors::read_only(function);
    }
}

/// The rows of a set-returning call: a tuplestore of the declared row type.
pub struct Materialized {
    store: *mut pg_sys::Tuplestorestate,
    pub desc: pg_sys::TupleDesc,
}

impl Materialized {
    /// Adds one row (its values in the declared type's attribute order; copied).
    pub fn push(&self, values: &[pg_sys::Datum], nulls: &[bool]) {
        // SAFETY: values and nulls have one entry per attribute of desc.
        unsafe {
            assert_eq!(values.len(), (*self.desc).natts as usize);
            pg_sys::tuplestore_putvalues(self.store, self.desc, values.as_ptr().cast_mut(), nulls.as_ptr().cast_mut());
        }
    }
}

/// A varlena datum's size as stored whole (header included), from its header or its toast
/// pointer: nothing is detoasted or decompressed.
///
/// # Safety
/// `datum` is a non-NULL varlena.
pub unsafe fn raw_size(datum: pg_sys::Datum) -> usize {
    let value = datum.cast_mut_ptr::<pg_sys::varlena>();
    // A plain value (the usual argument) is measured here, without a call into PostgreSQL, as
    // it measures one: a short header counted as a full one.
    if is_plain(value) {
        return pgrx::varlena::varsize_any_exhdr(value) + pg_sys::VARHDRSZ;
    }
    pg_sys::toast_raw_datum_size(datum)
}

/// Whether a varlena is stored inline and uncompressed: its bytes are there to read as they are.
///
/// # Safety
/// `value` points to a varlena.
unsafe fn is_plain(value: *const pg_sys::varlena) -> bool {
    !pgrx::varlena::varatt_is_1b_e(value) && !pgrx::varlena::varatt_is_4b_c(value)
}

/// The most bytes a one-dimensional text[] of `count` keys' uids can take: its header and null
/// bitmap, and each element's 4-byte header, MAX_ID_BYTES and alignment.
fn max_text_array_bytes(count: usize) -> usize {
    64 + count.div_ceil(8) + count * (4 + MAX_ID_BYTES + 3)
}

/// The bytes of a text-family varlena datum, detoasted.
///
/// # Safety
/// `datum` is a non-NULL varlena; the returned slice lives as long as the current memory context.
pub unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    let mut value = datum.cast_mut_ptr::<pg_sys::varlena>();
    // As pg_detoast_datum_packed, which returns a plain value as it is, without calling it.
    if !is_plain(value) {
        value = pg_sys::pg_detoast_datum_packed(value);
    }
    std::slice::from_raw_parts(pgrx::varlena::vardata_any(value) as *const u8, pgrx::varlena::varsize_any_exhdr(value))
}

/// The elements of a text[] (None for a NULL one), as their bytes.
///
/// # Safety
/// `array` is a detoasted text[]; the slices live as long as it and the current memory context.
unsafe fn text_elements<'a>(array: *mut pg_sys::ArrayType) -> Vec<Option<&'a [u8]>> {
    let mut elements: *mut pg_sys::Datum = std::ptr::null_mut();
    let mut nulls: *mut bool = std::ptr::null_mut();
    let mut found = 0;
    pg_sys::deconstruct_array(array, pg_sys::TEXTOID, -1, false, pg_sys::TYPALIGN_INT as _, &mut elements, &mut nulls, &mut found);
    (0..found as usize).map(|i| (!*nulls.add(i)).then(|| varlena_bytes(*elements.add(i)))).collect()
}

/// The non-NULL elements of a text[] datum (a statement's result), as their bytes.
///
/// # Safety
/// `datum` is a non-NULL text[]; the slices live as long as the current memory context.
pub unsafe fn text_array_elements<'a>(datum: pg_sys::Datum) -> Vec<&'a [u8]> {
    let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
    text_elements(array).into_iter().flatten().collect()
}

/// A text datum holding `bytes` (taken as the database encoding's), palloc'd.
pub fn text_datum(bytes: &[u8]) -> pg_sys::Datum {
    // SAFETY: copies `bytes` into a new palloc'd text, under its guard.
    unsafe { guard::guarded(|| guard::text(bytes)) }
}

/// A one-dimensional text[] datum of `elements` (each taken as the database encoding's), palloc'd.
pub fn text_array_datum<'a>(elements: impl Iterator<Item = &'a [u8]>) -> pg_sys::Datum {
    let texts: Vec<pg_sys::Datum> = elements.map(text_datum).collect();
    // SAFETY: builds an array of text datums that live in the current memory context.
    unsafe {
        let array =
            pg_sys::construct_array(texts.as_ptr().cast_mut(), texts.len() as i32, pg_sys::TEXTOID, -1, false, pg_sys::TYPALIGN_INT as _);
        pg_sys::Datum::from(array)
    }
}

/// A one-dimensional int8[] datum of `values`, palloc'd.
pub fn int8_array_datum(values: &[i64]) -> pg_sys::Datum {
    let datums: Vec<pg_sys::Datum> = values.iter().map(|&v| pg_sys::Datum::from(v)).collect();
    // SAFETY: builds an array of by-value int8 datums.
    unsafe {
        let array = pg_sys::construct_array(
            datums.as_ptr().cast_mut(),
            datums.len() as i32,
            pg_sys::INT8OID,
            8,
            true,
            pg_sys::TYPALIGN_DOUBLE as _,
        );
        pg_sys::Datum::from(array)
    }
}
