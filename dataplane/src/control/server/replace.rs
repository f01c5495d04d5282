//! The ruleset requests: replacement (held to the limits, persisted as verified text,
//! then published), the SIGHUP reload of the configured file, and freeing generations
//! the workers handed back.

use super::dispatch::no_rules;
use super::{Backend, MAX_VIEW, RULESET_FILE, Server, ruleset_error, summary};
use crate::control::proto::{ControlError, ErrorCode, Response, RulesetSource};
use crate::rules;

impl<B: Backend> Server<B> {
    /// Periodic control-thread work: frees ruleset generations the workers handed back.
    pub fn housekeeping(&mut self) {
        if let Some(r) = self.rules.as_mut() {
            r.publisher.reclaim();
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.rules.as_ref().map_or(0, |r| r.current().generation())
    }

    /// Replaces (or with `dry_run` only checks) the running ruleset. The source is held
    /// to the limits before it is parsed (text) or compiled (both); an empty source is
    /// refused (replacing everything with nothing takes an explicit `flush ruleset`, as
    /// with nft); a replacement is persisted, as text that reads back to the same ruleset,
    /// before it is published, and a persistence failure publishes nothing.
    pub fn replace_ruleset(
        &mut self,
        src: &RulesetSource,
        dry_run: bool,
    ) -> Result<Response, ControlError> {
        let Some(r) = self.rules.as_mut() else {
            return Err(no_rules());
        };
        let bad = |e: rules::Error| ruleset_error(&e);
        let (ast, text) = match src {
            RulesetSource::Text(t) => {
                r.limits.check_text(t).map_err(bad)?;
                (rules::parse::parse(t).map_err(bad)?, t.clone())
            }
            RulesetSource::Json(v) => {
                let ast = rules::json::from_json(v).map_err(bad)?;
                let text = rules::to_text_verified(&ast).map_err(bad)?;
                r.limits.check_text(&text).map_err(bad)?;
                (ast, text)
            }
        };
        if ast.tables.is_empty() && !ast.flush {
            return Err(ControlError::new(
                ErrorCode::BadRuleset,
                "the ruleset is empty: nothing was changed (to remove every rule, send \
                 `flush ruleset`)",
            ));
        }
        let r = self.install(&ast, &text, dry_run, false)?;
        if !dry_run && let Some(state) = self.rules.as_mut() {
            // New tables: their handles start again, as after `flush ruleset`.
            state.handle_marks.clear();
        }
        Ok(r)
    }

    /// Applies nft commands to the running ruleset (`parse::apply`: all of them or
    /// none), then installs the result as [`replace_ruleset`](Self::replace_ruleset)
    /// does, except that the rules the commands left alone keep their counters.
    pub fn ruleset_commands(
        &mut self,
        commands: &str,
        dry_run: bool,
    ) -> Result<Response, ControlError> {
        let Some(r) = self.rules.as_ref() else {
            return Err(no_rules());
        };
        let bad = |e: rules::Error| ruleset_error(&e);
        r.limits.check_text(commands).map_err(bad)?;
        let has_command = commands.lines().any(|l| {
            let l = l.trim_start();
            !l.is_empty() && !l.starts_with('#')
        });
        if !has_command {
            return Err(ControlError::new(
                ErrorCode::BadRuleset,
                "no commands: nothing was changed",
            ));
        }
        let mut marks = r.handle_marks.clone();
        let ast =
            rules::parse::apply_marked(r.current().source(), commands, &mut marks).map_err(bad)?;
        let text = rules::to_text_verified(&ast).map_err(bad)?;
        r.limits.check_text(&text).map_err(bad)?;
        let applied = self.install(&ast, &text, dry_run, true)?;
        if !dry_run && let Some(state) = self.rules.as_mut() {
            state.handle_marks = marks;
        }
        Ok(applied)
    }

    /// Compiles `ast`, checks the size of its listing, and unless `dry_run` persists
    /// `text` and publishes (`keep_counters`: rules that did not change keep theirs).
    pub(super) fn install(
        &mut self,
        ast: &rules::Ruleset,
        text: &str,
        dry_run: bool,
        keep_counters: bool,
    ) -> Result<Response, ControlError> {
        let Some(r) = self.rules.as_mut() else {
            return Err(no_rules());
        };
        let bad = |e: rules::Error| ruleset_error(&e);
        crate::nat::node::check_ruleset(ast, &r.nat_node).map_err(bad)?;
        let mut compiled = rules::compile_with(ast, &r.ports, r.workers, &r.limits).map_err(bad)?;
        let view = crate::control::view::max_view_bytes(&compiled);
        if view > MAX_VIEW {
            return Err(ControlError::new(
                ErrorCode::BadRuleset,
                format!(
                    "the ruleset's listing (text, JSON and counters) would take {view} bytes, \
                     more than the {MAX_VIEW} a control answer may carry"
                ),
            ));
        }
        let count = u32::try_from(compiled.rule_count()).unwrap_or(u32::MAX);
        let before = summary(r.current().source());
        let after = summary(ast);
        if dry_run {
            return Ok(Response::RulesetApplied {
                generation: r.current().generation(),
                dry_run: true,
                rules: count,
                before,
                after,
            });
        }
        self.state
            .write_atomic(RULESET_FILE, text.as_bytes())
            .map_err(|e| {
                ControlError::new(
                    ErrorCode::Persist,
                    format!("{}: {e}", self.state.path(RULESET_FILE).display()),
                )
            })?;
        // Declared elements with a timeout start it at install (a whole replacement starts
        // it again, as `nft -f` does; an incremental change keeps the running elements).
        if keep_counters {
            compiled.adopt_dynsets(&r.current());
        }
        compiled.start_declared(self.backend.now_ns());
        let generation = if keep_counters {
            r.publisher.publish_keeping_counters(compiled)
        } else {
            r.publisher.publish(compiled)
        };
        Ok(Response::RulesetApplied {
            generation,
            dry_run: false,
            rules: count,
            before,
            after,
        })
    }

    /// SIGHUP: reloads the config's ruleset file (replacing the persisted one). Returns a
    /// line for the log.
    pub fn reload_ruleset_file(&mut self) -> String {
        let Some(file) = self.rules.as_ref().and_then(|r| r.file.clone()) else {
            return "SIGHUP: no ruleset file in the configuration".into();
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => return format!("SIGHUP: {}: {e}", file.display()),
        };
        match self.replace_ruleset(&RulesetSource::Text(text), false) {
            Ok(Response::RulesetApplied {
                generation, rules, ..
            }) => format!(
                "SIGHUP: {} loaded: generation {generation}, {rules} rules",
                file.display()
            ),
            Ok(other) => format!("SIGHUP: unexpected {other:?}"),
            Err(e) => match (e.line, e.column) {
                (Some(l), Some(c)) => {
                    format!(
                        "SIGHUP: {}:{l}:{c}: {} (ruleset kept)",
                        file.display(),
                        e.message
                    )
                }
                _ => format!("SIGHUP: {}: {} (ruleset kept)", file.display(), e.message),
            },
        }
    }
}
