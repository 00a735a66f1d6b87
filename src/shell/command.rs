//! The shell's backslash commands (`\\d`, `\\timing`, ...) and their help.

use datafusion::error::{DataFusionError, Result};

use super::output::Format;

/// A backslash command of the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\\d`: list tables.
    ListTables,
    /// `\\d NAME`: describe a table.
    Describe(String),
    /// `\\df`: list the lifecycle functions.
    ListFunctions,
    /// `\\timing [on|off]`: toggle (or set) printing of row counts and elapsed time.
    Timing(Option<bool>),
    /// `\\format FMT`: change the output format.
    Format(Format),
    /// `\\maxrows N|all`: rows the table format shows at most.
    MaxRows(Option<usize>),
    /// `\\?`: the help table.
    Help,
    /// `\\q`: quit.
    Quit,
}

/// Every command: its forms and what it does (the help table is made from this).
const COMMANDS: &[(&str, &str)] = &[
    ("\\d", "list tables"),
    ("\\d NAME", "describe a table"),
    ("\\df", "list the lifecycle functions"),
    (
        "\\timing [on|off]",
        "toggle printing of row counts and elapsed time",
    ),
    ("\\format FMT", "output format: table, csv, json, ndjson"),
    (
        "\\maxrows N|all",
        "rows the table format shows at most (default 10000)",
    ),
    ("\\? | \\h | \\help", "this help"),
    (
        "\\q | \\quit",
        "quit (or Ctrl-D); Ctrl-C cancels the running query",
    ),
];

/// The help text: how statements end, then the command table.
pub fn help() -> String {
    let width = COMMANDS.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out = String::from("Statements end with ';' and may span lines. Commands:\n");
    for (c, what) in COMMANDS {
        out.push_str(&format!("  {c:<width$}  {what}\n"));
    }
    out.pop();
    out
}

impl std::str::FromStr for Command {
    type Err = DataFusionError;

    fn from_str(line: &str) -> Result<Self> {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next();
        let extra = words.next();
        let unknown =
            || DataFusionError::Plan(format!("unknown command '{line}'; \\? lists the commands"));
        if extra.is_some() {
            return Err(unknown());
        }
        Ok(match (cmd, arg) {
            ("\\q" | "\\quit", None) => Command::Quit,
            ("\\?" | "\\h" | "\\help", None) => Command::Help,
            ("\\d", None) => Command::ListTables,
            ("\\d", Some(name)) => Command::Describe(name.to_string()),
            ("\\df", None) => Command::ListFunctions,
            ("\\timing", None) => Command::Timing(None),
            ("\\timing", Some("on")) => Command::Timing(Some(true)),
            ("\\timing", Some("off")) => Command::Timing(Some(false)),
            ("\\maxrows", Some("all")) => Command::MaxRows(None),
            ("\\maxrows", Some(n)) => Command::MaxRows(Some(n.parse().map_err(|_| {
                DataFusionError::Plan(format!("\\maxrows takes a number or 'all', got '{n}'"))
            })?)),
            ("\\format", Some(f)) => {
                Command::Format(<Format as clap::ValueEnum>::from_str(f, true).map_err(|_| {
                    DataFusionError::Plan(format!(
                        "unknown format '{f}': use table, csv, json or ndjson"
                    ))
                })?)
            }
            _ => return Err(unknown()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_the_help_lists_them() {
        assert_eq!("\\d".parse::<Command>().unwrap(), Command::ListTables);
        assert_eq!(
            "\\d purchases".parse::<Command>().unwrap(),
            Command::Describe("purchases".into())
        );
        assert_eq!(
            "\\timing off".parse::<Command>().unwrap(),
            Command::Timing(Some(false))
        );
        assert_eq!(
            "\\format CSV".parse::<Command>().unwrap(),
            Command::Format(Format::Csv)
        );
        assert!("\\format xml".parse::<Command>().is_err());
        assert!("\\nope".parse::<Command>().is_err());
        assert!("\\d a b".parse::<Command>().is_err());
        let h = help();
        for (c, _) in COMMANDS {
            assert!(h.contains(c), "{c}");
        }
    }
}
