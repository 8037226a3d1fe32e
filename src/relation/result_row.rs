//! The rows functions return, built from the table's rows by column name.
//!
//! A function returns its declared type (conversation_row for the single-key functions, the
//! batch's RETURNS TABLE row for batches); the rows come from the table as it is now, which users
//! change: a column added (pinned, muted), dropped, or retyped, a partition whose columns are in
//! another physical order. So every attribute of the returned type is filled from the table's
//! column of the same name, converted when its type differs (an assignment cast, as INSERT would
//! apply), and a stored value that does not fit is an error naming the column.
//!
//! Rows come from an index probe (a slot of the table, a partition or a shard) or from a statement
//! that returns the table's columns by name (`{columns}` in statements.rs: explicit columns, never the
//! whole-row `c`, whose type Citus cannot cast from a shard's). When the source and the returned
//! type have the same layout (the table as CREATE EXTENSION made it), the row is copied as it is,
//! only stamped with the returned type: one copy, no deforming. That is the hit path's case.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgTupleDesc;

use crate::glue::call::Call;
use crate::glue::errors;
use crate::glue::guard::{c, guarded};
use crate::relation::membership::{self, Memberships};
use crate::relation::probe::Snapshot;

/// The column batches add in front of the table's columns.
pub const INPUT_POSITION: &CStr = c"input_position";
/// The columns conversation_list adds after them.
pub const LIST_POSITION: &CStr = c"position";
pub const LIST_DEPARTED: &CStr = c"departed";

/// The declared return type of a call, and the memory context its result must live in.
pub struct ResultRow {
    desc: pg_sys::TupleDesc,
    context: pg_sys::MemoryContext,
    /// Whether `desc` is the type cache's, referenced by this row (released on drop), rather than
    /// the calling scan's own.
    referenced: bool,
    /// Where a large membership's channel row is read (the open table's schema), and with what snapshot
    /// (the call's reads': its own for a STABLE function, a fresh one for the others).
    schema: pg_sys::Oid,
    snapshot: Snapshot,
}

impl ResultRow {
    /// For a function declared to return a composite type, built in the current memory context
    /// (the one a result must live in). The type comes from the call expression when there is
    /// one (cheap), from the function's catalog entry otherwise. Called in FROM, the scan hands
    /// the function the descriptor it expects (of that type), which is used as it is; otherwise
    /// the type cache's is. If the type is gone, DROP EXTENSION committed while this call was on
    /// its way: a clear 55000.
    pub fn of_call(call: &Call, schema: pg_sys::Oid, snapshot: Snapshot) -> ResultRow {
        // SAFETY: flinfo is set for every fmgr call; resultinfo, when set, is a node the caller
        // owns for the whole call; lookup_rowtype_tupdesc_noerror raises 42809 if the function
        // was declared to return something not composite. Under one guard (calls and plain
        // values only).
        unsafe {
            let (flinfo, function, info) = ((*call.fcinfo()).flinfo, call.function(), (*call.fcinfo()).resultinfo);
            let context = pg_sys::CurrentMemoryContext;
            let (desc, referenced) = guarded(|| {
                let mut type_oid = c::get_fn_expr_rettype(flinfo);
                if type_oid == pg_sys::InvalidOid {
                    type_oid = c::get_func_rettype(function);
                }
                let expected = expected_desc(info);
                if !expected.is_null() && (*expected).tdtypeid == type_oid && type_oid != pg_sys::RECORDOID {
                    return (expected, false);
                }
                (c::lookup_rowtype_tupdesc_noerror(type_oid, -1, true), true)
            });
            if desc.is_null() {
                errors::extension_dropped();
            }
            ResultRow { desc, context, referenced, schema, snapshot }
        }
    }

    /// The row in `slot` (a slot of the table, a partition or a shard) as the result datum.
    pub fn of_slot(&self, slot: *mut pg_sys::TupleTableSlot) -> pg_sys::Datum {
        // SAFETY: the slot holds a row of a relation whose descriptor it carries; the tuple is
        // fetched without a copy (the buffer stays pinned until the next probe), and on the hit
        // path read and copied as it is, all under one guard (calls and plain values; is_large
        // calls nothing that raises).
        unsafe {
            let source = (*slot).tts_tupleDescriptor;
            let (desc, context) = (self.desc, self.context);
            let same = same_layout(source, desc);
            let large = membership::large_column_of((*slot).tts_tableOid, source);
            let fetched = guarded(|| {
                let tuple = c::ExecFetchSlotHeapTuple(slot, false, std::ptr::null_mut());
                if same && !membership::is_large(tuple, source, large) {
                    Ok(copied_whole(tuple, source, desc, context))
                } else {
                    Err(tuple)
                }
            });
            fetched.unwrap_or_else(|tuple| self.formed_from(tuple, source, large))
        }
    }

    /// A row of `desc` (a relation's, or a statement's result: the table's columns by name) as
    /// the result datum.
    pub fn of_tuple(&self, tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> pg_sys::Datum {
        // SAFETY: `tuple` is a row of `desc`; copied under a guard.
        unsafe {
            let large = membership::large_column(desc);
            if same_layout(desc, self.desc) && !membership::is_large(tuple, desc, large) {
                let (target, context) = (self.desc, self.context);
                return guarded(|| copied_whole(tuple, desc, target, context));
            }
            self.formed_from(tuple, desc, large)
        }
    }

    /// A row of `desc`, whose `large` is at `large` (0: none), as the result datum, filled column
    /// by column by name: a membership of a large channel as it stands.
    ///
    /// # Safety
    /// `tuple` is a row of `desc`.
    unsafe fn formed_from(&self, tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, large: i32) -> pg_sys::Datum {
        let (values, nulls) = Memberships::new(self.schema, self.snapshot).values_of(tuple, desc, large);
        self.formed(&ColumnMap::new(desc, self.desc, &[]), &values, &nulls)
    }

    /// The result datum formed from `values` and `nulls` (in the source's attribute order) through `map`.
    ///
    /// # Safety
    /// `values` and `nulls` are a deformed row of the descriptor `map` was built from.
    unsafe fn formed(&self, map: &ColumnMap, values: &[pg_sys::Datum], nulls: &[bool]) -> pg_sys::Datum {
        let caller = pg_sys::MemoryContextSwitchTo(self.context);
        let (mut out_values, mut out_nulls) = map.fill(values, nulls, &[]);
        let tuple = pg_sys::heap_form_tuple(self.desc, out_values.as_mut_ptr(), out_nulls.as_mut_ptr());
        // heap_form_tuple inlines toasted values too, so the composite stands on its own.
        let datum = pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data);
        pg_sys::MemoryContextSwitchTo(caller);
        datum
    }
}

impl Drop for ResultRow {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called (a second ERROR here would
        // abort the process); the abort that follows releases the reference with the resource
        // owner.
        if self.referenced && !std::thread::panicking() {
            // SAFETY: the reference lookup_rowtype_tupdesc took.
            unsafe { pg_sys::DecrTupleDescRefCount(self.desc) }
        }
    }
}

/// The descriptor a calling scan expects of a function in FROM (its ReturnSetInfo's), or NULL.
///
/// # Safety
/// `info` is a call's resultinfo: NULL or a valid node.
unsafe fn expected_desc(info: *mut pg_sys::Node) -> pg_sys::TupleDesc {
    if info.is_null() || (*info).type_ != pg_sys::NodeTag::T_ReturnSetInfo {
        return std::ptr::null_mut();
    }
    (*(info as *mut pg_sys::ReturnSetInfo)).expectedDesc
}

/// `tuple`, a row of `source`, copied as it is as a datum of `desc` (of the same layout) in
/// `context`. A tuple written before an ADD COLUMN holds fewer attributes, whose values live in
/// the table's descriptor, not the type's: it is expanded with `source`'s first (after 0.9.0's
/// update, every row until it is next written). Also inlines any toasted column: a returned
/// composite must stand on its own.
///
/// # Safety
/// Inside `guarded`. `tuple` is a valid heap tuple of `source`, which has the layout of `desc`.
unsafe fn copied_whole(
    tuple: pg_sys::HeapTuple,
    source: pg_sys::TupleDesc,
    desc: pg_sys::TupleDesc,
    context: pg_sys::MemoryContext,
) -> pg_sys::Datum {
    let caller = pg_sys::MemoryContextSwitchTo(context);
    let datum = if (pg_sys::HeapTupleHeaderGetNatts((*tuple).t_data) as i32) < (*desc).natts {
        let expanded = c::heap_expand_tuple(tuple, source);
        let datum = c::heap_copy_tuple_as_datum(expanded, desc);
        pg_sys::heap_freetuple(expanded);
        datum
    } else {
        c::heap_copy_tuple_as_datum(tuple, desc)
    };
    pg_sys::MemoryContextSwitchTo(caller);
    datum
}

/// Whether rows of `source` can be copied as they are into `target`: the same attributes, in the
/// same order, of the same names and types, dropped ones included.
///
/// # Safety
/// `source` and `target` are valid tuple descriptors.
unsafe fn same_layout(source: pg_sys::TupleDesc, target: pg_sys::TupleDesc) -> bool {
    if (*source).natts != (*target).natts {
        return false;
    }
    // On the hit path: the attributes read in place. Names are compared as the catalog's whole
    // NameData (NUL-padded there); padding that differed would only cost the slower path.
    attributes(source).iter().zip(attributes(target)).all(|(s, t)| {
        s.attisdropped == t.attisdropped
            && (s.attisdropped || (s.atttypid == t.atttypid && s.atttypmod == t.atttypmod && s.attname.data == t.attname.data))
            && s.attlen == t.attlen
            && s.attalign == t.attalign
    })
}

/// The attributes of a tuple descriptor, in place.
///
/// # Safety
/// `desc` is a valid tuple descriptor that outlives the slice.
unsafe fn attributes<'a>(desc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    let count = (*desc).natts as usize;
    #[cfg(not(feature = "pg18"))]
    let first = (*desc).attrs.as_ptr();
    // PostgreSQL 18 keeps a compact copy of each attribute first, the full attributes after them.
    #[cfg(feature = "pg18")]
    let first = (*desc).compact_attrs.as_ptr().add(count).cast::<pg_sys::FormData_pg_attribute>();
    std::slice::from_raw_parts(first, count)
}

/// An attribute's name, as the catalog's bytes.
fn name_bytes(attribute: &pg_sys::FormData_pg_attribute) -> &[u8] {
    // SAFETY: NameData holds a NUL-terminated name.
    unsafe { CStr::from_ptr(attribute.attname.data.as_ptr()) }.to_bytes()
}

/// How each attribute of a target row type is filled from a source row: by name.
pub struct ColumnMap {
    fills: Vec<Fill>,
}

enum Fill {
    /// A dropped attribute of the target: NULL.
    Nothing,
    /// A value the caller adds (the `extras`-th): a batch's input position, a list's position.
    Extra(usize),
    /// The source attribute (0-based) of the same name, converted if its type differs.
    Column { source: usize, name: String, conversion: Conversion },
}

enum Conversion {
    None,
    Function { function: pg_sys::FmgrInfo, arguments: i32, typmod: i32 },
    ViaText { output: pg_sys::FmgrInfo, input: pg_sys::FmgrInfo, io_param: pg_sys::Oid, typmod: i32 },
}

impl ColumnMap {
    /// Matches every attribute of `target` with the `source` attribute of the same name. A
    /// target attribute the source lacks, or whose type nothing converts to, is an error naming
    /// the column (55000): the table's shape, not the value, is at fault. Target attributes named
    /// in `extras` are left to `fill`'s caller.
    pub fn new(source: pg_sys::TupleDesc, target: pg_sys::TupleDesc, extras: &[&CStr]) -> ColumnMap {
        // SAFETY: both descriptors are valid for the duration of the call.
        let (source, target) = unsafe { (PgTupleDesc::from_pg_unchecked(source), PgTupleDesc::from_pg_unchecked(target)) };
        let fills = target
            .iter()
            .map(|wanted| {
                if wanted.attisdropped {
                    return Fill::Nothing;
                }
                // Names compared as the catalog's bytes (the hit path of the list builds this map
                // on every call): no UTF-8 check, no copy.
                let wanted_name = name_bytes(wanted);
                if let Some(extra) = extras.iter().position(|extra| wanted_name == extra.to_bytes()) {
                    return Fill::Extra(extra);
                }
                let Some(position) = source.iter().position(|have| !have.attisdropped && name_bytes(have) == wanted_name) else {
                    let name = String::from_utf8_lossy(wanted_name);
                    errors::table_shape(
                        &format!("it has no column {name}"),
                        &format!("Add the column back (ALTER TABLE conversation ADD COLUMN {name} ...), with the type and default the extension gave it."),
                    )
                };
                let have = source.get(position).expect("a position in the descriptor");
                let name = String::from_utf8_lossy(wanted_name);
                // SAFETY: catalog lookups for two existing types.
                let conversion = unsafe { Conversion::between(have.atttypid, wanted.atttypid, wanted.atttypmod, &name) };
                // The name is kept for a conversion's errors only.
                let name = if matches!(conversion, Conversion::None) { String::new() } else { name.into_owned() };
                Fill::Column { source: position, name, conversion }
            })
            .collect();
        ColumnMap { fills }
    }

    /// The target row's values and null flags from the source row's, and the `extras` (NULL where
    /// None).
    pub fn fill(&self, values: &[pg_sys::Datum], nulls: &[bool], extras: &[Option<pg_sys::Datum>]) -> (Vec<pg_sys::Datum>, Vec<bool>) {
        let mut out_values = Vec::with_capacity(self.fills.len());
        let mut out_nulls = Vec::with_capacity(self.fills.len());
        for fill in &self.fills {
            let (value, null) = match fill {
                Fill::Nothing => (pg_sys::Datum::from(0), true),
                Fill::Extra(extra) => extras.get(*extra).copied().flatten().map_or((pg_sys::Datum::from(0), true), |v| (v, false)),
                Fill::Column { source, name, conversion } => {
                    if nulls[*source] {
                        (pg_sys::Datum::from(0), true)
                    } else {
                        (conversion.apply(values[*source], name), false)
                    }
                }
            };
            out_values.push(value);
            out_nulls.push(null);
        }
        (out_values, out_nulls)
    }
}

impl Conversion {
    /// How a value of type `from` becomes one of type `to`: as INSERT would assign it.
    ///
    /// # Safety
    /// `from` and `to` are type OIDs of the catalog (a column's and the result type attribute's).
    unsafe fn between(from: pg_sys::Oid, to: pg_sys::Oid, typmod: i32, column: &str) -> Conversion {
        if from == to {
            return Conversion::None;
        }
        let mut function_oid = pg_sys::InvalidOid;
        let path = pg_sys::find_coercion_pathway(to, from, pg_sys::CoercionContext::COERCION_ASSIGNMENT, &mut function_oid);
        let function_info = |oid: pg_sys::Oid| {
            let mut info: pg_sys::FmgrInfo = std::mem::zeroed();
            pg_sys::fmgr_info(oid, &mut info);
            info
        };
        match path {
            pg_sys::CoercionPathType::COERCION_PATH_RELABELTYPE => Conversion::None,
            pg_sys::CoercionPathType::COERCION_PATH_FUNC => {
                Conversion::Function { function: function_info(function_oid), arguments: pg_sys::get_func_nargs(function_oid), typmod }
            }
            pg_sys::CoercionPathType::COERCION_PATH_COERCEVIAIO => {
                let (mut output, mut varlena, mut input, mut io_param) =
                    (pg_sys::InvalidOid, false, pg_sys::InvalidOid, pg_sys::InvalidOid);
                pg_sys::getTypeOutputInfo(from, &mut output, &mut varlena);
                pg_sys::getTypeInputInfo(to, &mut input, &mut io_param);
                Conversion::ViaText { output: function_info(output), input: function_info(input), io_param, typmod }
            }
            _ => {
                let name = |oid| CStr::from_ptr(pg_sys::format_type_be(oid)).to_string_lossy().into_owned();
                errors::table_shape(
                    &format!("column {column} is {}, which cannot be returned as {}", name(from), name(to)),
                    &format!("ALTER TABLE conversation ALTER COLUMN {column} TYPE {} USING ..., or give conversation_row's attribute the column's type.", name(to)),
                )
            }
        }
    }

    fn apply(&self, value: pg_sys::Datum, column: &str) -> pg_sys::Datum {
        let convert = || -> pg_sys::Datum {
            // SAFETY: fmgr calls of the cast or I/O functions found for these types.
            unsafe {
                match self {
                    Conversion::None => value,
                    Conversion::Function { function, arguments, typmod } => {
                        let function = function as *const _ as *mut pg_sys::FmgrInfo;
                        if *arguments == 1 {
                            pg_sys::FunctionCall1Coll(function, pg_sys::InvalidOid, value)
                        } else {
                            pg_sys::FunctionCall3Coll(
                                function,
                                pg_sys::InvalidOid,
                                value,
                                pg_sys::Datum::from(*typmod),
                                pg_sys::Datum::from(false),
                            )
                        }
                    }
                    Conversion::ViaText { output, input, io_param, typmod } => {
                        let text = pg_sys::OutputFunctionCall(output as *const _ as *mut _, value);
                        pg_sys::InputFunctionCall(input as *const _ as *mut _, text, *io_param, *typmod)
                    }
                }
            }
        };
        if let Conversion::None = self {
            return value;
        }
        PgTryBuilder::new(convert)
            .catch_others(|caught| match caught {
                CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
                    errors::value_not_returnable(report.sql_error_code(), column, report.message())
                }
                other => other.rethrow(),
            })
            .execute()
    }
}
