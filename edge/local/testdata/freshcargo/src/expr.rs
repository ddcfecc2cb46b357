//! Integer expressions for a ledger's rules (`fee = amount * 3 / 1000 + 1`): a tokenizer,
//! a precedence-climbing parser and checked evaluation.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(i64),
    Var(String),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl Op {
    fn prec(self) -> u8 {
        match self {
            Op::Add | Op::Sub => 1,
            Op::Mul | Op::Div | Op::Rem => 2,
        }
    }

    fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
            Op::Rem => '%',
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    Unexpected(usize, String),
    UnknownVar(String),
    Overflow,
    DivideByZero,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unexpected(at, what) => write!(f, "at {at}: unexpected {what}"),
            Error::UnknownVar(v) => write!(f, "unknown variable {v}"),
            Error::Overflow => write!(f, "overflow"),
            Error::DivideByZero => write!(f, "division by zero"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(i64),
    Ident(String),
    Op(char),
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, Error> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' => i += 1,
            b'0'..=b'9' => {
                let start = i;
                let mut v: i64 = 0;
                while i < b.len() && b[i].is_ascii_digit() {
                    v = v.checked_mul(10).and_then(|v| v.checked_add((b[i] - b'0') as i64)).ok_or(Error::Overflow)?;
                    i += 1;
                }
                out.push((start, Tok::Num(v)));
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push((start, Tok::Ident(s[start..i].to_string())));
            }
            b'+' | b'-' | b'*' | b'/' | b'%' => {
                out.push((i, Tok::Op(c as char)));
                i += 1;
            }
            b'(' => {
                out.push((i, Tok::Open));
                i += 1;
            }
            b')' => {
                out.push((i, Tok::Close));
                i += 1;
            }
            _ => return Err(Error::Unexpected(i, format!("{:?}", c as char))),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.0)
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        let at = self.at();
        let Some(t) = self.peek().cloned() else { return Err(Error::Unexpected(at, "end".into())) };
        self.pos += 1;
        match t {
            Tok::Num(v) => Ok(Expr::Num(v)),
            Tok::Ident(n) => Ok(Expr::Var(n)),
            Tok::Op('-') => Ok(Expr::Neg(Box::new(self.primary()?))),
            Tok::Open => {
                let e = self.expr(0)?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(Error::Unexpected(self.at(), "missing )".into()));
                }
                self.pos += 1;
                Ok(e)
            }
            t => Err(Error::Unexpected(at, format!("{t:?}"))),
        }
    }

    fn expr(&mut self, min: u8) -> Result<Expr, Error> {
        let mut lhs = self.primary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op('+')) => Op::Add,
                Some(Tok::Op('-')) => Op::Sub,
                Some(Tok::Op('*')) => Op::Mul,
                Some(Tok::Op('/')) => Op::Div,
                Some(Tok::Op('%')) => Op::Rem,
                _ => return Ok(lhs),
            };
            if op.prec() <= min {
                return Ok(lhs);
            }
            self.pos += 1;
            let rhs = self.expr(op.prec())?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
    }
}

pub fn parse(s: &str) -> Result<Expr, Error> {
    let mut p = Parser { toks: tokenize(s)?, pos: 0, end: s.len() };
    let e = p.expr(0)?;
    if p.pos != p.toks.len() {
        return Err(Error::Unexpected(p.at(), "trailing input".into()));
    }
    Ok(e)
}

impl Expr {
    pub fn eval(&self, vars: &dyn Fn(&str) -> Option<i64>) -> Result<i64, Error> {
        match self {
            Expr::Num(v) => Ok(*v),
            Expr::Var(n) => vars(n).ok_or_else(|| Error::UnknownVar(n.clone())),
            Expr::Neg(e) => e.eval(vars)?.checked_neg().ok_or(Error::Overflow),
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval(vars)?, b.eval(vars)?);
                match op {
                    Op::Add => a.checked_add(b).ok_or(Error::Overflow),
                    Op::Sub => a.checked_sub(b).ok_or(Error::Overflow),
                    Op::Mul => a.checked_mul(b).ok_or(Error::Overflow),
                    Op::Div if b == 0 => Err(Error::DivideByZero),
                    Op::Rem if b == 0 => Err(Error::DivideByZero),
                    Op::Div => a.checked_div(b).ok_or(Error::Overflow),
                    Op::Rem => a.checked_rem(b).ok_or(Error::Overflow),
                }
            }
        }
    }
}

/// Display prints the fewest parentheses that parse back to the same tree
/// (operators are left-associative).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn go(e: &Expr, parent: u8, right: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match e {
                Expr::Num(v) => write!(f, "{v}"),
                Expr::Var(n) => write!(f, "{n}"),
                Expr::Neg(e) => {
                    write!(f, "-")?;
                    go(e, 3, false, f)
                }
                Expr::Bin(op, a, b) => {
                    let p = op.prec();
                    let paren = p < parent || (p == parent && right);
                    if paren {
                        write!(f, "(")?;
                    }
                    go(a, p, false, f)?;
                    write!(f, " {} ", op.symbol())?;
                    go(b, p, true, f)?;
                    if paren {
                        write!(f, ")")?;
                    }
                    Ok(())
                }
            }
        }
        go(self, 0, false, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random_expr(r: &mut Rng, depth: u32) -> Expr {
        if depth == 0 || r.below(4) == 0 {
            return match r.below(3) {
                0 => Expr::Var(["amount", "fee", "x"][r.below(3) as usize].to_string()),
                _ => Expr::Num((r.skewed() >> 1 >> r.below(63)) as i64),
            };
        }
        if r.below(8) == 0 {
            return Expr::Neg(Box::new(random_expr(r, depth - 1)));
        }
        let op = [Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Rem][r.below(5) as usize];
        Expr::Bin(op, Box::new(random_expr(r, depth - 1)), Box::new(random_expr(r, depth - 1)))
    }

    fn vars(n: &str) -> Option<i64> {
        match n {
            "amount" => Some(120_000),
            "fee" => Some(-7),
            "x" => Some(3),
            _ => None,
        }
    }

    #[test]
    fn printing_then_parsing_gives_the_same_tree() {
        let mut r = Rng::new(41);
        for _ in 0..25_000 {
            let e = random_expr(&mut r, 6);
            let s = e.to_string();
            let back = parse(&s).unwrap_or_else(|err| panic!("{s}: {err}"));
            assert_eq!(back, e, "{s}");
            assert_eq!(back.eval(&vars), e.eval(&vars));
        }
    }

    #[test]
    fn precedence_and_associativity() {
        let ev = |s: &str| parse(s).unwrap().eval(&vars).unwrap();
        assert_eq!(ev("1 + 2 * 3"), 7);
        assert_eq!(ev("(1 + 2) * 3"), 9);
        assert_eq!(ev("10 - 4 - 3"), 3);
        assert_eq!(ev("100 / 10 / 5"), 2);
        assert_eq!(ev("-x * 2"), -6);
        assert_eq!(ev("amount * 3 / 1000 + 1"), 361);
        assert_eq!(ev("17 % 5 * 2"), 4);
    }

    #[test]
    fn errors_are_named() {
        assert_eq!(parse("1 +"), Err(Error::Unexpected(3, "end".into())));
        assert_eq!(parse("1 $ 2"), Err(Error::Unexpected(2, "'$'".into())));
        assert_eq!(parse("(1 + 2"), Err(Error::Unexpected(6, "missing )".into())));
        assert_eq!(parse("1 2"), Err(Error::Unexpected(2, "trailing input".into())));
        assert_eq!(parse("99999999999999999999"), Err(Error::Overflow));
        assert_eq!(parse("1 / (x - 3)").unwrap().eval(&vars), Err(Error::DivideByZero));
        assert_eq!(parse("y").unwrap().eval(&vars), Err(Error::UnknownVar("y".into())));
        assert_eq!(parse("9223372036854775807 + 1").unwrap().eval(&vars), Err(Error::Overflow));
    }
}
