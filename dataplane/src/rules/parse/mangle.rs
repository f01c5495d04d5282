//! Packet mangling statements: `tcp option maxseg size set N|rt mtu` (MSS clamping),
//! `ip|ip6 dscp set N`.

use super::cursor::Parser;
use crate::rules::Error;
use crate::rules::ast::{Field, Kind, MssValue, Pos, Stmt, Value};

impl Parser {
    /// After `ip dscp` / `ip6 dscp`, with `set` next: `set N` (a number 0-63 or a name,
    /// `cs1`, `af41`, `ef`).
    pub(super) fn dscp_set(&mut self, f: Field, pos: Pos) -> Result<Stmt, Error> {
        self.next();
        let (w, wp) = self.word("a DSCP value")?;
        match super::value::parse_value(Kind::Dscp, &w) {
            Ok(Value::Num(n)) => {
                let n = u8::try_from(n)
                    .map_err(|_| Error::at(wp, &w, "Value exceeds valid range 0-63"))?;
                Ok(Stmt::DscpSet(f, n, pos))
            }
            Ok(_) => Err(Error::at(wp, &w, "`dscp set` takes one value")),
            Err(m) => Err(Error::at(wp, &w, m)),
        }
    }

    /// After `tcp option maxseg size`, with `set` next: `set N|rt mtu` (MSS clamping).
    pub(super) fn mss_set(&mut self, pos: Pos) -> Result<Stmt, Error> {
        self.next();
        if self.eat_word("rt") {
            let (k, kp) = self.word("`mtu`")?;
            if k != "mtu" {
                return Err(Error::at(kp, &k, "expected `rt mtu`"));
            }
            return Ok(Stmt::MssSet(MssValue::RtMtu, pos));
        }
        let (w, wp) = self.word("an MSS value or `rt mtu`")?;
        let n = super::value::parse_num(&w)
            .ok_or_else(|| Error::at(wp, &w, "expected a number or `rt mtu`"))?;
        let n = u16::try_from(n)
            .map_err(|_| Error::at(wp, &w, format!("Value {n} exceeds valid range 0-65535")))?;
        Ok(Stmt::MssSet(MssValue::Num(n), pos))
    }
}
