//! The element requests: list a named set or map, and add, create or delete its elements
//! as one new generation (`control::elements` does the work on the AST; this installs it
//! as nft commands are installed, keeping every rule's counter).

use super::dispatch::no_rules;
use super::ruleset::summary;
use super::{Backend, Server, ruleset_error};
use crate::control::elements;
use crate::control::proto::{
    ControlError, ElementChange, ErrorCode, Response, SetElement, TableFamilyName,
};
use crate::rules;
use std::sync::Arc;

impl<B: Backend> Server<B> {
    /// `set_elements_get`.
    pub fn set_elements(
        &self,
        family: Option<TableFamilyName>,
        table: &str,
        set: &str,
    ) -> Result<Response, ControlError> {
        let r = self.rules.as_ref().ok_or_else(no_rules)?;
        let cur = r.current();
        let mut v = match elements::view(cur.source(), cur.generation(), family, table, set) {
            // A meter has no declaration: listed as `nft list meter` writes it.
            Err(e) if e.code == ErrorCode::NotFound && e.field.as_deref() == Some("set") => {
                let src = cur.source();
                let t = &src.tables[elements::table_index(src, family, table)?];
                let Some((ty, store)) = cur.dynset_typed(t.family, &t.name, set) else {
                    return Err(e);
                };
                let with = elements::with_meter(src, t, set, ty, store.size());
                elements::as_meter(elements::view(&with, cur.generation(), family, table, set)?)
            }
            v => v?,
        };
        let fam = elements::family_of(v.family);
        if let Some((ty, live)) = cur.dynset_elements(fam, &v.table, &v.set, self.backend.now_ns())
        {
            elements::live(&mut v, ty, &live);
        } else if let Some((ty, live)) =
            cur.timed_map_elements(fam, &v.table, &v.set, self.backend.now_ns())
            && let Some(m) = cur
                .source()
                .tables
                .iter()
                .find(|t| t.family == fam && t.name == v.table)
                .and_then(|t| t.maps.iter().find(|m| m.name == v.set))
        {
            elements::timed_map(&mut v, m, ty, &live);
        }
        Ok(Response::SetElements(v))
    }

    /// `set_elements_change`: the changed ruleset is persisted and published (or with
    /// `dry_run` only checked) as a ruleset of nft commands is.
    pub fn set_elements_change(
        &mut self,
        family: Option<TableFamilyName>,
        table: &str,
        set: &str,
        op: ElementChange,
        els: &[SetElement],
        dry_run: bool,
    ) -> Result<Response, ControlError> {
        let r = self.rules.as_ref().ok_or_else(no_rules)?;
        let cur = r.current();
        let ti = elements::table_index(cur.source(), family, table)?;
        let t = &cur.source().tables[ti];
        if let Some((ty, store)) = cur.dynset_typed(t.family, &t.name, set) {
            // A dynamic set or meter: its live elements change (`nft add|delete element`
            // on the kernel's dynamic set), not only its declaration.
            let store = Arc::clone(store);
            let now = self.backend.now_ns();
            let change = elements::live_change(cur.source(), ti, set, (ty, &store), op, els, now)?;
            if let Some(ast) = &change.declaration {
                let text = rules::to_text_verified(ast).map_err(|e| ruleset_error(&e))?;
                self.install(ast, &text, dry_run, true)?;
            }
            if !dry_run {
                change.apply(set, &store, now)?;
            }
            let r = self.rules.as_ref().ok_or_else(no_rules)?;
            let cur = r.current();
            let s = summary(cur.source());
            return Ok(Response::RulesetApplied {
                generation: cur.generation(),
                dry_run,
                rules: u32::try_from(cur.rule_count()).unwrap_or(u32::MAX),
                before: s,
                after: s,
            });
        }
        let ast = elements::change(cur.source(), family, table, set, op, els)?;
        let bad = |e: rules::Error| ruleset_error(&e);
        let text = rules::to_text_verified(&ast).map_err(bad)?;
        r.limits.check_text(&text).map_err(bad)?;
        self.install(&ast, &text, dry_run, true)
    }
}
