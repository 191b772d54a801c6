//! A deployment's log lines as the browser holds them, filed by the `seq` the server gave
//! each line. The book never numbers a line itself and keeps each `seq` once, whichever
//! source brought it (the server-rendered tail, a page loaded on demand, the live
//! socket): a line can be missing (not loaded yet), never doubled or misplaced.

use protocol::{LogLine, Seq};
use std::sync::Arc;

/// Lines per page loaded on demand.
pub const PAGE: Seq = 1000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogBook {
    /// Index `seq - gone - 1`; `None` while not loaded.
    lines: Vec<Option<Arc<str>>>,
    /// How many lines are loaded.
    loaded: usize,
    /// Lines `1..=gone` are no longer kept by the server.
    gone: Seq,
}

impl LogBook {
    /// The highest `seq` known to exist (0 for an empty log).
    pub fn total(&self) -> Seq {
        self.gone + self.lines.len() as Seq
    }

    /// Lines up to this `seq` are no longer kept by the server (a runtime log keeps only
    /// its newest lines): they are neither shown nor asked for.
    pub fn gone(&self) -> Seq {
        self.gone
    }

    /// Records that the server keeps no line before `seq`.
    pub fn drop_before(&mut self, seq: Seq) {
        let gone = seq.saturating_sub(1);
        if gone <= self.gone {
            return;
        }
        let cut = usize::try_from(gone - self.gone)
            .unwrap_or(usize::MAX)
            .min(self.lines.len());
        self.loaded -= self.lines.drain(..cut).flatten().count();
        self.gone = gone;
    }

    pub fn loaded(&self) -> usize {
        self.loaded
    }

    fn index(&self, seq: Seq) -> Option<usize> {
        usize::try_from(seq.checked_sub(self.gone + 1)?).ok()
    }

    /// Line `seq`, if loaded.
    pub fn get(&self, seq: Seq) -> Option<&Arc<str>> {
        self.lines.get(self.index(seq)?)?.as_ref()
    }

    /// Files lines by their `seq`; a `seq` already filed is left as it is.
    pub fn insert(&mut self, lines: impl IntoIterator<Item = LogLine>) {
        for line in lines {
            let Some(index) = self.index(line.seq) else {
                continue;
            };
            if index >= self.lines.len() {
                self.lines.resize(index + 1, None);
            }
            if self.lines[index].is_none() {
                self.lines[index] = Some(line.line.into());
                self.loaded += 1;
            }
        }
    }

    /// Records that lines up to `total` exist (their text may come later).
    pub fn extend_to(&mut self, total: Seq) {
        if let Some(len) = total
            .checked_sub(self.gone)
            .and_then(|n| usize::try_from(n).ok())
            && len > self.lines.len()
        {
            self.lines.resize(len, None);
        }
    }

    /// The pages (`first..=last` seqs, aligned to [`PAGE`]) holding a missing line of
    /// `from..=to`.
    pub fn missing_pages(&self, from: Seq, to: Seq) -> Vec<(Seq, Seq)> {
        let to = to.min(self.total());
        let mut pages = Vec::new();
        let mut seq = from.max(self.gone + 1);
        while seq <= to {
            let page_first = (seq - 1) / PAGE * PAGE + 1;
            let page_last = (page_first + PAGE - 1).min(self.total());
            if (seq..=page_last.min(to)).any(|s| self.get(s).is_none()) {
                pages.push((page_first, page_last));
            }
            seq = page_last + 1;
        }
        pages
    }

    /// The last `n` loaded lines, oldest first.
    pub fn last_lines(&self, n: usize) -> Vec<Arc<str>> {
        let mut lines: Vec<Arc<str>> = self.lines.iter().rev().flatten().take(n).cloned().collect();
        lines.reverse();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: Seq) -> LogLine {
        LogLine {
            seq,
            line: format!("line {seq}\n"),
            timestamp: String::new(),
            stream: None,
        }
    }

    #[test]
    fn lines_are_filed_by_seq_once() {
        let mut book = LogBook::default();
        book.insert((201..=400).map(line));
        assert_eq!((book.total(), book.loaded()), (400, 200));
        assert!(book.get(200).is_none());
        // The same lines again (a resume, an overlapping page): nothing doubles.
        book.insert((350..=450).map(line));
        assert_eq!((book.total(), book.loaded()), (450, 250));
        assert_eq!(book.get(450).map(|l| l.as_ref()), Some("line 450\n"));
        let mut other = LogLine {
            seq: 300,
            line: "changed\n".into(),
            timestamp: String::new(),
            stream: None,
        };
        book.insert([other.clone()]);
        assert_eq!(book.get(300).map(|l| l.as_ref()), Some("line 300\n"));
        other.seq = 0;
        book.insert([other]);
        assert_eq!(book.total(), 450);
    }

    #[test]
    fn lines_no_longer_kept_are_dropped_and_never_asked_for() {
        let mut book = LogBook::default();
        book.insert((1..=3000).map(line));
        book.drop_before(2501);
        assert_eq!(
            (book.gone(), book.total(), book.loaded()),
            (2500, 3000, 500)
        );
        assert!(book.get(2500).is_none());
        assert_eq!(book.get(2501).map(|l| l.as_ref()), Some("line 2501\n"));
        // A late page of gone lines is not filed again, and they are not asked for.
        book.insert((2001..=2600).map(line));
        assert_eq!(book.loaded(), 500);
        book.extend_to(4000);
        assert_eq!(book.missing_pages(1, 3500), vec![(3001, 4000)]);
        // Dropping less than is gone changes nothing.
        book.drop_before(10);
        assert_eq!((book.gone(), book.total()), (2500, 4000));
    }

    #[test]
    fn missing_pages_are_page_aligned() {
        let mut book = LogBook::default();
        book.insert((1801..=2500).map(line));
        assert_eq!(book.missing_pages(1, 10), vec![(1, 1000)]);
        assert_eq!(book.missing_pages(1790, 2100), vec![(1001, 2000)]);
        assert_eq!(book.missing_pages(1990, 2100), vec![]);
        assert_eq!(book.missing_pages(2001, 2500), vec![]);
        book.extend_to(3200);
        assert_eq!(
            book.missing_pages(900, 9000),
            vec![(1, 1000), (1001, 2000), (2001, 3000), (3001, 3200)]
        );
        assert_eq!(
            book.last_lines(2)
                .iter()
                .map(|l| l.as_ref())
                .collect::<Vec<_>>(),
            ["line 2499\n", "line 2500\n"]
        );
    }
}
