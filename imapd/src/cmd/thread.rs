//! THREAD and UID THREAD: ORDEREDSUBJECT and REFERENCES.
//!
//! Owns the two threading algorithms and the `* THREAD` response. The
//! search program is SEARCH's (cmd/search.rs `matching`): only the messages
//! it matches are threaded, as in Dovecot. The keys (Message-ID,
//! References or else the first In-Reply-To id, base subject and whether
//! it was a reply) come from mime::ParsedMessage::thread_keys.
//!
//! REFERENCES follows Dovecot 2.3's reading of RFC 5256 4
//! (index-thread-links.c, index-thread-finish.c), which the golden answers
//! in tests/golden/sort/ come from:
//! - (1) a duplicate Message-ID, or none, gets a container of its own; a
//!   reference never moves a container that has a parent already, and a
//!   link that would make a loop is not made; the message's own parent is
//!   the last reference, replacing a parent an earlier message's
//!   References gave it (none when it has no references);
//! - (2)-(3) dummies are pruned by hanging each message under its nearest
//!   ancestor that is a message, or under the thread's top dummy when
//!   there is none; a top dummy left with one child gives way to it;
//! - (4)-(5) roots are sorted, then grouped by base subject (a dummy by its
//!   oldest child's subject) with the RFC's table rules, then sorted again;
//! - (6) siblings are in sent-date order, INTERNALDATE when there is no
//!   usable Date:, ties by UID (here: sequence number, the same order).
//!
//! Standards: RFC 5256 4 (THREAD, ORDEREDSUBJECT, REFERENCES) and 5 (the
//! response: `(a b)` a chain, `(a (b)(c))` siblings, `((a)(b))` a dummy
//! root), RFC 5256 2.1 (base subject), RFC 7162 3.1.5 does not apply
//! (THREAD has no MODSEQ result).
//!
//! Security: the threads are built without recursion (explicit stacks), so
//! a chain of References as long as the mailbox cannot overflow the stack.
//! Linking checks for loops by walking up the parents, only when the
//! child has children of its own: O(depth) for such a link, as in Dovecot.

use std::collections::HashMap;

use proto::imap::{SearchArgs, Tag, ThreadAlgorithm};

use super::search::{charset_ok, internal_secs, load_header, matching, Matches};
use crate::mime::ThreadKeys;
use crate::session::Session;

/// One matched message.
struct Msg {
    /// The number sent: UID or sequence number.
    num: u32,
    keys: ThreadKeys,
    /// Sent date, INTERNALDATE when there is none.
    date: i64,
}

pub fn thread(s: &mut Session, tag: &Tag, uid: bool, alg: &ThreadAlgorithm, args: &SearchArgs) {
    if let ThreadAlgorithm::Other(_) = alg {
        // Dovecot: "BAD Error in IMAP command THREAD: Unknown thread algorithm."
        s.bad(tag, "Unknown thread algorithm.");
        return;
    }
    if !charset_ok(s, tag, args.charset.as_deref()) {
        return;
    }
    let Matches { hits, .. } = matching(s, &args.keys);
    let Some(view) = s.selected.as_mut() else {
        return;
    };
    let msgs: Vec<Msg> = hits
        .iter()
        .map(|&(seq, u)| {
            let keys = load_header(view, u)
                .map(|m| m.thread_keys())
                .unwrap_or_default();
            // Dovecot: a sent date of 0 (none, or 1-Jan-1970) is replaced
            // by the received date.
            let date = match keys.date {
                Some(d) if d != 0 => d,
                _ => internal_secs(view, u),
            };
            Msg {
                num: if uid { u } else { seq },
                keys,
                date,
            }
        })
        .collect();
    let text = match alg {
        ThreadAlgorithm::OrderedSubject => ordered_subject(&msgs),
        _ => references(&msgs),
    };
    s.out.extend_from_slice(b"* THREAD ");
    s.out.extend_from_slice(text.as_bytes());
    s.out.extend_from_slice(b"\r\n");
    s.ok(tag, "Thread completed.");
}

/// RFC 5256 4 ORDEREDSUBJECT: sorted by base subject, then sent date; one
/// thread per base subject, its first message the parent of the others;
/// threads in the order of their first message's date. Written as Dovecot
/// writes it: `(1)`, `(1 2)`, `(1 (2)(3))`.
fn ordered_subject(msgs: &[Msg]) -> String {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&msgs[a], &msgs[b]);
        x.keys
            .subject
            .cmp(&y.keys.subject)
            .then(x.date.cmp(&y.date))
            .then(x.num.cmp(&y.num))
    });
    let mut threads: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match threads.last_mut() {
            Some(t) if msgs[t[0]].keys.subject == msgs[i].keys.subject => t.push(i),
            _ => threads.push(vec![i]),
        }
    }
    threads.sort_by(|a, b| {
        let (x, y) = (&msgs[a[0]], &msgs[b[0]]);
        x.date.cmp(&y.date).then(x.num.cmp(&y.num))
    });
    let mut out = String::new();
    for t in threads {
        let n = |i: usize| msgs[t[i]].num;
        match t.len() {
            1 => out.push_str(&format!("({})", n(0))),
            2 => out.push_str(&format!("({} {})", n(0), n(1))),
            _ => {
                out.push_str(&format!("({} ", n(0)));
                for i in 1..t.len() {
                    out.push_str(&format!("({})", n(i)));
                }
                out.push(')');
            }
        }
    }
    out
}

/// A container of RFC 5256 4 (1): a message, or a dummy that only a
/// reference names.
#[derive(Default)]
struct Node {
    msg: Option<usize>,
    parent: Option<usize>,
    /// Nodes whose parent this is (a node without any cannot close a
    /// loop: the common case needs no walk).
    kids: u32,
}

/// A thread root while subjects are gathered (Dovecot's
/// mail_thread_root_node).
#[derive(Clone)]
struct Root {
    node: usize,
    dummy: bool,
    /// Merged away or empty: not written.
    ignore: bool,
    /// The root it was grouped under (5.C): merged in 5.E.
    parent: Option<usize>,
    reply: bool,
    /// Sort key: date and number of the message, or of a dummy's oldest
    /// child.
    date: i64,
    num: u32,
}

/// The thread tree: message containers, then the dummies merging makes.
struct Tree<'a> {
    msgs: &'a [Msg],
    nodes: Vec<Node>,
    children: Vec<Vec<usize>>,
}

impl Tree<'_> {
    /// Sort key of a message node.
    fn key(&self, n: usize) -> (i64, u32) {
        self.nodes[n]
            .msg
            .map_or((0, 0), |m| (self.msgs[m].date, self.msgs[m].num))
    }

    fn sort_children(&mut self, n: usize) {
        let mut kids = std::mem::take(&mut self.children[n]);
        kids.sort_by_key(|&k| self.key(k));
        self.children[n] = kids;
    }

    /// Would making `child` a child of `parent` close a loop (is `child`
    /// `parent` or one of its ancestors)?
    fn has_ancestor(&self, parent: usize, child: usize) -> bool {
        let mut cur = Some(parent);
        while let Some(c) = cur {
            if c == child {
                return true;
            }
            cur = self.nodes[c].parent;
        }
        false
    }

    /// RFC 5256 4 (1)(B): link unless linked, parented already, or a loop.
    fn link(&mut self, parent: usize, child: usize) {
        if self.nodes[child].parent.is_some() {
            // the same link, or a conflicting one: the first stays
            return;
        }
        if parent == child || (self.nodes[child].kids > 0 && self.has_ancestor(parent, child)) {
            return;
        }
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].kids += 1;
    }

    /// Fill a root's sort key (and promote a dummy's only child), as
    /// Dovecot's sort_root_nodes.
    fn fill_root(&mut self, r: &mut Root) {
        if !r.dummy {
            (r.date, r.num) = self.key(r.node);
            return;
        }
        if self.children[r.node].is_empty() {
            r.ignore = true;
            return;
        }
        self.sort_children(r.node);
        let first = self.children[r.node][0];
        if self.children[r.node].len() == 1 {
            r.node = first;
            r.dummy = false;
        }
        (r.date, r.num) = self.key(first);
    }

    fn sort_roots(&mut self, roots: &mut [Root]) {
        for r in roots.iter_mut().filter(|r| !r.ignore) {
            self.fill_root(r);
        }
        roots.sort_by_key(|r| (r.date, r.num));
    }

    /// The message whose subject a root stands for.
    fn subject_msg(&self, r: &Root) -> Option<usize> {
        let n = if r.dummy {
            *self.children[r.node].first()?
        } else {
            r.node
        };
        self.nodes[n].msg
    }
}

/// RFC 5256 4 REFERENCES, as Dovecot 2.3 does it (see the module header).
fn references(msgs: &[Msg]) -> String {
    let mut tree = Tree {
        msgs,
        nodes: Vec::new(),
        children: Vec::new(),
    };
    let mut ids: HashMap<&str, usize> = HashMap::new();
    fn id_node<'m>(tree: &mut Tree<'_>, ids: &mut HashMap<&'m str, usize>, id: &'m str) -> usize {
        *ids.entry(id).or_insert_with(|| {
            tree.nodes.push(Node::default());
            tree.nodes.len() - 1
        })
    }
    // (1)
    for (i, m) in msgs.iter().enumerate() {
        let node = match m.keys.message_id.as_deref() {
            Some(id) => {
                let n = id_node(&mut tree, &mut ids, id);
                if tree.nodes[n].msg.is_none() {
                    n
                } else {
                    // a duplicate Message-ID: a container of its own
                    tree.nodes.push(Node::default());
                    tree.nodes.len() - 1
                }
            }
            None => {
                tree.nodes.push(Node::default());
                tree.nodes.len() - 1
            }
        };
        tree.nodes[node].msg = Some(i);
        let mut parent: Option<usize> = None;
        for r in &m.keys.references {
            let n = id_node(&mut tree, &mut ids, r);
            if let Some(p) = parent {
                tree.link(p, n);
            }
            parent = Some(n);
        }
        // (1)(C): the last reference is the parent; a different one an
        // earlier References gave is dropped.
        if let Some(old) = tree.nodes[node].parent {
            if Some(old) != parent {
                tree.nodes[node].parent = None;
                tree.nodes[old].kids -= 1;
            }
        }
        if let Some(p) = parent {
            tree.link(p, node);
        }
    }
    // (2)-(3): roots, and each message under its nearest message ancestor
    // (or the top dummy).
    tree.children = vec![Vec::new(); tree.nodes.len()];
    let mut roots: Vec<Root> = Vec::new();
    for n in 0..tree.nodes.len() {
        let Some(mut p) = tree.nodes[n].parent else {
            roots.push(Root {
                node: n,
                dummy: tree.nodes[n].msg.is_none(),
                ignore: false,
                parent: None,
                reply: false,
                date: 0,
                num: 0,
            });
            continue;
        };
        if tree.nodes[n].msg.is_none() {
            continue;
        }
        while tree.nodes[p].msg.is_none() {
            match tree.nodes[p].parent {
                Some(q) => p = q,
                None => break,
            }
        }
        tree.children[p].push(n);
    }
    // (4)
    tree.sort_roots(&mut roots);
    // (5)(A)-(C): the subject table.
    let mut table: HashMap<String, usize> = HashMap::new();
    for i in 0..roots.len() {
        if roots[i].ignore {
            continue;
        }
        let Some(m) = tree.subject_msg(&roots[i]) else {
            continue;
        };
        let (subject, reply) = (&msgs[m].keys.subject, msgs[m].keys.subject_is_reply);
        if subject.is_empty() {
            continue;
        }
        match table.get(subject.as_str()).copied() {
            None => {
                table.insert(subject.clone(), i);
            }
            Some(t) => {
                if !roots[t].dummy && (roots[i].dummy || (roots[t].reply && !reply)) {
                    roots[t].parent = Some(i);
                    table.insert(subject.clone(), i);
                } else {
                    roots[i].parent = Some(t);
                }
            }
        }
        roots[i].reply = reply;
    }
    // (5)(E): merge the threads of one subject.
    let mut changed = false;
    let count = roots.len();
    for i in 0..count {
        if roots[i].parent.is_none() || roots[i].ignore {
            continue;
        }
        changed = true;
        let mut top = i;
        while let Some(p) = roots[top].parent {
            top = p;
        }
        let (cur, head) = (roots[i].clone(), roots[top].clone());
        if cur.dummy {
            // both dummies: the children become siblings
            let kids = std::mem::take(&mut tree.children[cur.node]);
            tree.children[head.node].extend(kids);
            roots[i].ignore = true;
        } else if head.dummy || (cur.reply && !head.reply) {
            tree.children[head.node].push(cur.node);
            roots[i].ignore = true;
        } else {
            // a new dummy holding both
            tree.nodes.push(Node::default());
            tree.children.push(vec![head.node, cur.node]);
            let d = tree.nodes.len() - 1;
            roots[top].parent = Some(roots.len());
            roots[top].ignore = true;
            roots[i].ignore = true;
            roots.push(Root {
                node: d,
                dummy: true,
                ignore: false,
                parent: None,
                reply: false,
                date: 0,
                num: 0,
            });
        }
    }
    if changed {
        tree.sort_roots(&mut roots);
    }
    // (6) and the response.
    let mut out = String::new();
    for r in roots.iter().filter(|r| !r.ignore) {
        write_root(&mut tree, r, &mut out);
    }
    out
}

/// One thread as RFC 5256 5 and Dovecot's imap_thread_write have it:
/// `(n)`, `(n child...)`, a dummy root without a number; a node with one
/// child continues the chain, one with more puts each child in
/// parentheses. Iterative: the depth is the thread's.
fn write_root(tree: &mut Tree<'_>, r: &Root, out: &mut String) {
    enum Task {
        /// Write the children of a node (not the root's list).
        Children(usize),
        Text(String),
    }
    let num = |tree: &Tree<'_>, n: usize| tree.key(n).1;
    if tree.children[r.node].is_empty() {
        out.push_str(&format!("({})", num(tree, r.node)));
        return;
    }
    out.push('(');
    if !r.dummy {
        out.push_str(&format!("{} ", num(tree, r.node)));
    }
    // The root's children are always written as a list: a dummy root has
    // two or more, a message root's are written as a non-root list.
    let mut stack = vec![Task::Text(")".into()), Task::Children(r.node)];
    while let Some(t) = stack.pop() {
        let n = match t {
            Task::Text(s) => {
                out.push_str(&s);
                continue;
            }
            Task::Children(n) => n,
        };
        tree.sort_children(n);
        let kids = tree.children[n].clone();
        // Dovecot writes a dummy root's children as a root list
        let as_list = n == r.node && r.dummy;
        if kids.len() == 1 && !as_list {
            let k = kids[0];
            out.push_str(&num(tree, k).to_string());
            if !tree.children[k].is_empty() {
                out.push(' ');
                stack.push(Task::Children(k));
            }
            continue;
        }
        for &k in kids.iter().rev() {
            if tree.children[k].is_empty() {
                stack.push(Task::Text(format!("({})", num(tree, k))));
            } else {
                stack.push(Task::Text(")".into()));
                stack.push(Task::Children(k));
                stack.push(Task::Text(format!("({} ", num(tree, k))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(num: u32, id: &str, refs: &[&str], subject: &str, date: i64) -> Msg {
        let (base, reply) = crate::mime::base_subject(subject);
        Msg {
            num,
            keys: ThreadKeys {
                message_id: (!id.is_empty()).then(|| id.to_string()),
                references: refs.iter().map(|r| r.to_string()).collect(),
                subject: base.to_uppercase(),
                subject_is_reply: reply,
                date: Some(date),
            },
            date,
        }
    }

    #[test]
    fn chains_siblings_and_dummies() {
        let msgs = vec![
            msg(1, "a@x", &[], "hello", 10),
            msg(2, "b@x", &["a@x"], "Re: hello", 20),
            msg(3, "c@x", &["a@x", "b@x"], "Re: hello", 30),
            msg(4, "d@x", &["a@x"], "Re: hello", 25),
            // the parent is missing: a dummy with two children
            msg(5, "e@x", &["gone@x"], "other", 40),
            msg(6, "f@x", &["gone@x"], "other too", 41),
            // a loop: g references h, h references g
            msg(7, "g@x", &["h@x"], "loop", 50),
            msg(8, "h@x", &["g@x"], "loop", 51),
        ];
        assert_eq!(references(&msgs), "(1 (2 3)(4))((5)(6))(8 7)");
        assert_eq!(ordered_subject(&msgs), "(1 (2)(4)(3))(5)(6)(7 8)");
    }

    #[test]
    fn long_chain_does_not_recurse() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("{i}@x")).collect();
        let msgs: Vec<Msg> = (0..ids.len())
            .map(|i| {
                let refs: Vec<&str> = if i == 0 {
                    vec![]
                } else {
                    vec![ids[i - 1].as_str()]
                };
                msg(i as u32 + 1, &ids[i], &refs, "s", i as i64)
            })
            .collect();
        let out = references(&msgs);
        assert!(out.starts_with("(1 2 3 "), "{}", &out[..20]);
        assert!(out.ends_with(" 20000)"));
    }

    /// Random reference graphs (loops, self-references, duplicates,
    /// missing ids, shared subjects): every message is written exactly
    /// once, parentheses balance, nothing panics.
    #[test]
    fn random_graphs_write_each_message_once() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        let subjects = ["a", "Re: a", "b", "Fwd: b", "", "[x]", "c (fwd)"];
        for _ in 0..2_000 {
            let n = 1 + next(30) as usize;
            let msgs: Vec<Msg> = (0..n)
                .map(|i| {
                    let id = if next(8) == 0 {
                        String::new()
                    } else {
                        format!("{}@x", next(40))
                    };
                    let refs: Vec<String> =
                        (0..next(5)).map(|_| format!("{}@x", next(40))).collect();
                    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
                    let subject = subjects[next(subjects.len() as u64) as usize];
                    msg(i as u32 + 1, &id, &refs, subject, next(5) as i64)
                })
                .collect();
            for out in [references(&msgs), ordered_subject(&msgs)] {
                let mut depth = 0i32;
                for c in out.chars() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    assert!(depth >= 0, "{out}");
                }
                assert_eq!(depth, 0, "{out}");
                let mut nums: Vec<u32> = out
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|t| !t.is_empty())
                    .map(|t| t.parse().unwrap())
                    .collect();
                nums.sort_unstable();
                assert_eq!(nums, (1..=n as u32).collect::<Vec<_>>(), "{out}");
            }
        }
    }
}
