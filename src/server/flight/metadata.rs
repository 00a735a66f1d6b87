//! What the catalog calls answer: SqlInfo, XdbcTypeInfo and table types.

use std::sync::LazyLock;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType};
use datafusion::datasource::TableType;

pub(super) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Lifecycle");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierCase, 1i32); // case insensitive
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, 3i32); // case sensitive
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, 1i32); // nulls sorted high? DataFusion: NULLS LAST for ASC
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.build().expect("valid SqlInfo")
});

pub(super) static XDBC_INFO: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let mut add = |name: &str, t: XdbcDataType, prefix: Option<&str>| {
        b.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type: t,
            column_size: None,
            literal_prefix: prefix.map(Into::into),
            literal_suffix: prefix.map(|_| "'".into()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(t, XdbcDataType::XdbcVarchar),
            searchable: Searchable::Full,
            unsigned_attribute: None,
            fixed_prec_scale: false,
            auto_increment: None,
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: t,
            datetime_subcode: None,
            num_prec_radix: None,
            interval_precision: None,
        })
    };
    add("BOOLEAN", XdbcDataType::XdbcBit, None);
    add("INTEGER", XdbcDataType::XdbcInteger, None);
    add("BIGINT", XdbcDataType::XdbcBigint, None);
    add("DOUBLE", XdbcDataType::XdbcDouble, None);
    add("VARCHAR", XdbcDataType::XdbcVarchar, Some("'"));
    add("DATE", XdbcDataType::XdbcDate, Some("DATE '"));
    add(
        "TIMESTAMP",
        XdbcDataType::XdbcTimestamp,
        Some("TIMESTAMP '"),
    );
    b.build().expect("valid XdbcTypeInfo")
});

pub(super) fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
        TableType::Base => "TABLE",
    }
}
