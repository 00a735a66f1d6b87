//! The interactive shell: line editing, history, Ctrl-C cancelling the running query.

use super::*;

impl Shell {
    /// The interactive shell.
    pub async fn repl(&mut self) -> Result<()> {
        use rustyline::error::ReadlineError;
        let mut editor =
            rustyline::DefaultEditor::new().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".lifecycle_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        // Listen for Ctrl-C (SIGINT) for the whole session: it cancels the running query, and at
        // the prompt it is ignored here (the line editor handles the key itself on a terminal).
        let interrupts = Arc::new(tokio::sync::Notify::new());
        let listener = {
            let interrupts = interrupts.clone();
            tokio::spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    interrupts.notify_waiters();
                }
            })
        };
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
        if interactive {
            println!("Lifecycle SQL shell. End statements with ';'. \\? for help, \\q to quit.");
        }
        let mut buf = String::new();
        let mut failed = 0usize;
        let mut input_error = None;
        loop {
            let prompt = if buf.is_empty() {
                "lifecycle> "
            } else {
                "        -> "
            };
            match editor.readline(prompt) {
                Ok(line) => {
                    if is_blank_sql(&buf) && line.trim_start().starts_with('\\') {
                        buf.clear();
                        let _ = editor.add_history_entry(line.as_str());
                        let mut out = std::io::stdout();
                        match self.run_command(line.trim(), &mut out).await {
                            Ok(Next::Quit) => break,
                            Ok(Next::Continue) => {}
                            Err(e) => {
                                failed += 1;
                                eprintln!("Error: {}", error_line(&e))
                            }
                        }
                        continue;
                    }
                    buf.push_str(&line);
                    buf.push('\n');
                    if !statement_complete(&buf) {
                        continue;
                    }
                    let sql = std::mem::take(&mut buf);
                    let _ = editor.add_history_entry(sql.trim_end());
                    if !self.run_interruptible(&sql, &interrupts).await {
                        failed += 1;
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    // Ctrl-C at the prompt drops the statement being typed.
                    buf.clear();
                }
                Err(ReadlineError::Eof) => {
                    // Input from a pipe or file may end without a last ';': run that statement
                    // (on a terminal, Ctrl-D with a half-typed statement just leaves).
                    if !interactive && !is_blank_sql(&buf) {
                        let sql = std::mem::take(&mut buf);
                        if !self.run_interruptible(&sql, &interrupts).await {
                            failed += 1;
                        }
                    }
                    break;
                }
                Err(e) => {
                    input_error = Some(match e {
                        ReadlineError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                            "the input is not UTF-8 text; stopped reading".to_string()
                        }
                        other => format!("cannot read input: {other}"),
                    });
                    break;
                }
            }
        }
        listener.abort();
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        if let Some(e) = input_error {
            return Err(DataFusionError::Plan(e));
        }
        if !interactive && failed > 0 {
            return Err(DataFusionError::Plan(format!(
                "{failed} statement{} failed (see above)",
                if failed == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }

    /// Runs SQL until it finishes or Ctrl-C cancels it (dropping the query's streams).
    /// Returns false when the statement failed.
    async fn run_interruptible(&mut self, sql: &str, interrupts: &tokio::sync::Notify) -> bool {
        let mut out = std::io::stdout();
        let result = tokio::select! {
            r = self.run_sql(sql, &mut out) => Some(r),
            _ = interrupts.notified() => None,
        };
        match result {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                eprintln!("Error: {}", error_line(&e));
                false
            }
            // Cancelled on purpose (Ctrl-C): not a failure.
            None => {
                eprintln!("Query cancelled.");
                true
            }
        }
    }
}
