//! Just enough SQL lexing for the shell: where a statement ends (a `;` outside strings and
//! comments), and whether what is typed is only blank or comments.

/// A statement is complete when, outside strings and comments, it ends with ';'.
pub fn statement_complete(sql: &str) -> bool {
    let stripped = strip_comments_and_strings(sql);
    stripped.trim_end().ends_with(';')
}

pub(super) fn is_blank_sql(sql: &str) -> bool {
    strip_comments_and_strings(sql)
        .chars()
        .all(|c| c.is_whitespace() || c == ';')
}

/// Replaces string literals by `''` and drops `--` and `/* */` comments, so that ';' inside them
/// does not end a statement.
fn strip_comments_and_strings(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let quote = c;
                out.push(quote);
                for d in chars.by_ref() {
                    if d == quote {
                        break;
                    }
                }
                out.push(quote);
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness() {
        assert!(statement_complete("SELECT 1;"));
        assert!(statement_complete("SELECT 1; -- done\n"));
        assert!(!statement_complete("SELECT ';'"));
        assert!(!statement_complete("SELECT 1 -- ;"));
        assert!(!statement_complete("SELECT 1 /* ; */"));
        assert!(is_blank_sql("  -- only a comment\n ;"));
    }
}
