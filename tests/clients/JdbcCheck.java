// Real-client check of `lifecycle serve --pg-listen` with the PostgreSQL JDBC driver (Debian's
// libpostgresql-jdbc-java), the driver DBeaver, Metabase and most Java BI tools use.
//
// Usage: java -cp /usr/share/java/postgresql.jar tests/clients/JdbcCheck.java PORT PASSWORD
// Exits non-zero with a message on the first failed check.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcCheck {
    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAILED: " + what);
            System.exit(1);
        }
        System.out.println("ok: " + what);
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", "analyst");
        props.setProperty("password", args[1]);
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/lifecycle";
        try (Connection conn = DriverManager.getConnection(url, props)) {
            // JDBC's `?` placeholders go over the wire as $1, $2 (extended protocol).
            long literal;
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT count(*) FROM purchases WHERE amount > 100.0")) {
                rs.next();
                literal = rs.getLong(1);
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT count(*) FROM purchases WHERE amount > ?")) {
                ps.setDouble(1, 100.0);
                // Run it more than prepareThreshold (5) times: the driver then switches to a named
                // server-side statement.
                for (int i = 0; i < 7; i++) {
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        check(rs.getLong(1) == literal && literal > 0,
                              "JDBC ? parameter run " + (i + 1) + ": " + rs.getLong(1) + " == literal " + literal);
                    }
                }
            }
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT min(order_ts), lifecycle_stage(order_ts, CAST(? AS TIMESTAMP)) FROM purchases WHERE customer_id = ? GROUP BY customer_id")) {
                ps.setTimestamp(1, Timestamp.valueOf("2025-01-01 00:00:00"));
                ps.setLong(2, 1L);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "JDBC timestamp and bigint parameters return a row");
                    Timestamp first = rs.getTimestamp(1);
                    String stage = rs.getString(2);
                    check(first != null && stage != null && !stage.isEmpty(),
                          "JDBC reads TIMESTAMP " + first + " and stage " + stage);
                }
            }
            // DatabaseMetaData: what DBeaver's navigator calls.
            DatabaseMetaData md = conn.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_NAME"));
                }
            }
            check(tables.contains("purchases") && tables.contains("customers"), "JDBC getTables: " + tables);
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "purchases", "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
                }
            }
            check(columns.contains("order_ts:timestamp") && columns.contains("amount:numeric"),
                  "JDBC getColumns: " + columns);
            // A refused statement leaves the connection usable.
            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE purchases");
                check(false, "JDBC DROP TABLE refused");
            } catch (java.sql.SQLException e) {
                check("25006".equals(e.getSQLState()), "JDBC DROP TABLE refused: " + e.getSQLState() + " " + e.getMessage());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                rs.next();
                check(rs.getInt(1) == 1, "JDBC connection usable after the refusal");
            }
        }
    }
}
