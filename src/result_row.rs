//! The one conversation a function returns, as a composite datum of the function's declared
//! return type (conversation_row since 0.3.0; the table's own row type in earlier SQL, which this
//! library still serves until ALTER EXTENSION UPDATE).
//!
//! The rows we read or write have the table's row type. conversation_row has the same columns, so
//! a table tuple is copied into it as it is, only stamped with the other type: one copy, no
//! deforming. Why not return the table's type: see sql/pg_conversation--0.2.0--0.3.0.sql.

use pgrx::pg_sys;

use crate::errors;

/// Where and as what a call's result row is built: the declared return type's descriptor (a
/// typcache reference, released on drop) and the caller's memory context.
pub struct ResultRow {
    desc: pg_sys::TupleDesc,
    context: pg_sys::MemoryContext,
}

impl ResultRow {
    /// For the call in `fcinfo`, built in the current memory context (the one a result must live
    /// in). The return type comes from the call expression when there is one (cheap), from the
    /// function's catalog entry otherwise.
    ///
    /// # Safety
    /// `fcinfo` is the call's, with its flinfo set, and we are not connected to SPI yet.
    pub unsafe fn of_call(fcinfo: pg_sys::FunctionCallInfo) -> ResultRow {
        let flinfo = (*fcinfo).flinfo;
        let mut type_oid = pg_sys::get_fn_expr_rettype(flinfo);
        if type_oid == pg_sys::InvalidOid {
            type_oid = pg_sys::get_func_rettype((*flinfo).fn_oid);
        }
        ResultRow {
            // Raises 42809 if the function was declared to return something not composite.
            desc: pg_sys::lookup_rowtype_tupdesc(type_oid, -1),
            context: pg_sys::CurrentMemoryContext,
        }
    }

    /// A table tuple as the result datum.
    ///
    /// # Safety
    /// `tuple` is a valid heap tuple of the conversation table.
    pub unsafe fn from_tuple(&self, tuple: pg_sys::HeapTuple) -> pg_sys::Datum {
        // A byte copy is right only if the tuple holds every attribute of the type. A tuple
        // written before an ALTER TABLE ADD COLUMN holds fewer, and its missing values live in
        // the table's descriptor: a version that adds a column must deform and form instead.
        let attributes = ((*(*tuple).t_data).t_infomask2 & pg_sys::HEAP_NATTS_MASK as u16) as i32;
        if attributes != (*self.desc).natts {
            errors::broken_install("the function's return type no longer has the table's columns");
        }
        let caller = pg_sys::MemoryContextSwitchTo(self.context);
        // Also inlines any toasted column: a returned composite must stand on its own.
        let datum = pg_sys::heap_copy_tuple_as_datum(tuple, self.desc);
        pg_sys::MemoryContextSwitchTo(caller);
        datum
    }

    /// A composite datum of the table's row type (an SPI `RETURNING c` value) as the result datum.
    ///
    /// # Safety
    /// `composite` is a non-NULL composite datum of the conversation table's row type.
    pub unsafe fn from_composite(&self, composite: pg_sys::Datum) -> pg_sys::Datum {
        // Values in a tuple table may carry a short header; the tuple needs the plain one.
        let header = pg_sys::pg_detoast_datum(composite.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
        let mut tuple = pg_sys::HeapTupleData {
            t_len: pgrx::varsize_any(header.cast()) as u32,
            t_self: std::mem::zeroed(),
            t_tableOid: pg_sys::InvalidOid,
            t_data: header,
        };
        self.from_tuple(&mut tuple)
    }
}

impl Drop for ResultRow {
    fn drop(&mut self) {
        // SAFETY: the reference lookup_rowtype_tupdesc took. (After an ERROR the transaction's
        // resource owner would release it; dropping first is just as correct.)
        unsafe { pg_sys::DecrTupleDescRefCount(self.desc) }
    }
}
