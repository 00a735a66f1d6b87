// Real-client check of `lifecycle serve --pg-listen` with node-postgres (npm `pg`).
// Usage: NODE_PATH=dir/node_modules node tests/clients/node_pg.mjs PORT PASSWORD
// Exits non-zero with a message on the first failed check.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { Client } = require("pg");

function check(ok, what) {
  if (!ok) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const client = new Client({
  host: "127.0.0.1", port: Number(process.argv[2]), user: "analyst", password: process.argv[3], database: "lifecycle",
});
await client.connect();
const literal = await client.query("SELECT count(*) AS n FROM purchases WHERE amount > 100.0 AND customer_id < 5000");
const bound = await client.query("SELECT count(*) AS n FROM purchases WHERE amount > $1 AND customer_id < $2", [100.0, 5000]);
check(bound.rows[0].n === literal.rows[0].n && Number(literal.rows[0].n) > 0,
  `node-postgres $1 $2 parameters: ${bound.rows[0].n} == literal ${literal.rows[0].n}`);
const typed = await client.query("SELECT TIMESTAMP '2024-03-01 12:30:00' AS ts, make_array(1.5, 2.5) AS l");
check(typed.rows[0].ts instanceof Date && JSON.stringify(typed.rows[0].l) === "[1.5,2.5]",
  `node-postgres types: ${JSON.stringify(typed.rows[0])}`);
try {
  await client.query("INSERT INTO purchases VALUES (1, 1, TIMESTAMP '2024-01-01 00:00:00', 1.0)");
  check(false, "node-postgres INSERT refused");
} catch (e) {
  check(e.code === "25006", `node-postgres INSERT refused: ${e.code} ${e.message}`);
}
const after = await client.query("SELECT 1 AS one");
check(after.rows[0].one === 1 || after.rows[0].one === "1", "node-postgres connection usable after the refusal");
await client.end();
