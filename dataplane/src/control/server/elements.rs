//! The element requests: list a named set or map, and add, create or delete its elements
//! as one new generation (`control::elements` does the work on the AST; this installs it
//! as nft commands are installed, keeping every rule's counter).

use super::dispatch::no_rules;
use super::{Backend, Server, ruleset_error};
use crate::control::elements;
use crate::control::proto::{ControlError, ElementChange, Response, SetElement, TableFamilyName};
use crate::rules;

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
        let mut v = elements::view(cur.source(), cur.generation(), family, table, set)?;
        let fam = elements::family_of(v.family);
        if let Some((ty, live)) = cur.dynset_elements(fam, &v.table, &v.set, self.backend.now_ns())
        {
            elements::live(&mut v, ty, &live);
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
        let ast = elements::change(r.current().source(), family, table, set, op, els)?;
        let bad = |e: rules::Error| ruleset_error(&e);
        let text = rules::to_text_verified(&ast).map_err(bad)?;
        r.limits.check_text(&text).map_err(bad)?;
        self.install(&ast, &text, dry_run, true)
    }
}
