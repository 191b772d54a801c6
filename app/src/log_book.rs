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
    /// How many lines are loaded, and their text's size.
    loaded: usize,
    bytes: usize,
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
        for line in self.lines.drain(..cut).flatten() {
            self.loaded -= 1;
            self.bytes -= line.len();
        }
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
                self.bytes += line.line.len();
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

    /// What to ask the server for so that the missing lines of `from..=to` (the rows in
    /// view) arrive: per page ([`PAGE`] lines, aligned) holding one, a run of missing
    /// lines that ends at the last missing row in view and reaches up (towards older
    /// lines, where a reader scrolls) and then down, as far as one answer of ordinary
    /// lines goes. When lines are long (16 KiB), a request holds only what fits in
    /// [`protocol::MAX_PAGE_BYTES`], nearest the view's bottom first.
    pub fn requests(&self, from: Seq, to: Seq) -> Vec<(Seq, Seq)> {
        let to = to.min(self.total());
        let average = self.bytes.checked_div(self.loaded).unwrap_or(0).max(1) as Seq;
        let rows = if self.loaded == 0 {
            PAGE
        } else {
            (protocol::MAX_PAGE_BYTES / average).clamp(1, PAGE)
        };
        let missing = |seq: Seq| self.get(seq).is_none();
        let mut requests = Vec::new();
        let oldest = self.gone + 1;
        let mut seq = from.max(oldest);
        while seq <= to {
            let aligned = (seq - 1) / PAGE * PAGE + 1;
            let page_first = aligned.max(oldest);
            let page_last = (aligned + PAGE - 1).min(self.total());
            if let Some(bottom) = (seq..=page_last.min(to)).rev().find(|s| missing(*s)) {
                let (mut first, mut last) = (bottom, bottom);
                while first > page_first && last - first + 1 < rows && missing(first - 1) {
                    first -= 1;
                }
                while last < page_last && last - first + 1 < rows && missing(last + 1) {
                    last += 1;
                }
                requests.push((first, last));
            }
            seq = page_last + 1;
        }
        requests
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
        assert_eq!(book.requests(1, 3500), vec![(3001, 4000)]);
        // Dropping less than is gone changes nothing.
        book.drop_before(10);
        assert_eq!((book.gone(), book.total()), (2500, 4000));
    }

    #[test]
    fn requests_cover_the_missing_rows_in_view_within_pages() {
        let mut book = LogBook::default();
        book.insert((1801..=2500).map(line));
        // Ordinary lines: whole runs of missing lines, one page at most.
        assert_eq!(book.requests(1, 10), vec![(1, 1000)]);
        assert_eq!(book.requests(1790, 2100), vec![(1001, 1800)]);
        assert_eq!(book.requests(1990, 2100), vec![]);
        assert_eq!(book.requests(2001, 2500), vec![]);
        book.extend_to(3200);
        assert_eq!(
            book.requests(900, 9000),
            vec![(1, 1000), (1001, 1800), (2501, 3000), (3001, 3200)]
        );
        assert_eq!(
            book.last_lines(2)
                .iter()
                .map(|l| l.as_ref())
                .collect::<Vec<_>>(),
            ["line 2499\n", "line 2500\n"]
        );
    }

    #[test]
    fn long_lines_are_asked_for_a_few_at_a_time_from_the_bottom_of_the_view() {
        let long = |seq: Seq| LogLine {
            seq,
            line: format!("{seq} {}\n", "x".repeat(16 * 1024 - 10)),
            timestamp: String::new(),
            stream: None,
        };
        let mut book = LogBook::default();
        // The page showed the newest 4 of 100,000 lines of 16 KiB.
        book.insert((99_997..=100_000).map(long));
        // The view holds 59 rows: 16 lines (256 KiB) nearest its bottom first.
        assert_eq!(book.requests(99_942, 100_000), vec![(99_981, 99_996)]);
        book.insert((99_981..=99_996).map(long));
        assert_eq!(book.requests(99_942, 100_000), vec![(99_965, 99_980)]);
    }
}
