//! stub
#[derive(Debug)]
pub struct CtMatcher;
