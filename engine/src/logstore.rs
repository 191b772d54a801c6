//! Append-only logs, one per deployment, the permanent record of its output.
//!
//! `<id>.log` holds the lines exactly as sent (`GET /api/deployments/{id}/logs` serves it
//! as is). `<id>.idx` holds one 16-byte record per line: the byte offset where the line
//! ends and when it was written (Unix milliseconds), both little-endian. The index lets
//! a viewer resume at `since=N` with one seek instead of re-reading the whole log.
//!
//! Order of writes: the log bytes, then the index records. A crash between the two
//! leaves a log longer than its index; opening a writer truncates the log back to the
//! last indexed line, so a line is either whole in both files or in neither.

use protocol::{DeploymentId, LogLine, MAX_LINE_BYTES, Seq};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const RECORD: u64 = 16;
/// Lines read at a time by a search: bounds its memory.
const SEARCH_BATCH: Seq = 4096;

#[derive(Debug, Clone)]
pub struct LogStore {
    dir: PathBuf,
}

impl LogStore {
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<LogStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(LogStore { dir })
    }

    fn log_path(&self, id: DeploymentId) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    fn idx_path(&self, id: DeploymentId) -> PathBuf {
        self.dir.join(format!("{id}.idx"))
    }

    /// Opens the log of `id` for appending; its next line gets `count + 1`.
    pub async fn writer(&self, id: DeploymentId) -> io::Result<LogWriter> {
        let (log, idx) = (self.log_path(id), self.idx_path(id));
        blocking(move || LogWriter::open(&log, &idx)).await
    }

    /// How many lines the log of `id` holds (0 when it has none yet).
    pub async fn count(&self, id: DeploymentId) -> io::Result<Seq> {
        match tokio::fs::metadata(self.idx_path(id)).await {
            Ok(meta) => Ok(meta.len() / RECORD),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Lines `from..=to` (1-based, clamped to what exists), read with one seek each file.
    pub async fn read(&self, id: DeploymentId, from: Seq, to: Seq) -> io::Result<Vec<LogLine>> {
        self.read_bounded(id, from, to, u64::MAX).await
    }

    /// The first lines of `from..=to` whose text fits in `max_bytes` (at least one line,
    /// so a reader always makes progress): bounds what one read holds in memory.
    pub async fn read_bounded(
        &self,
        id: DeploymentId,
        from: Seq,
        to: Seq,
        max_bytes: u64,
    ) -> io::Result<Vec<LogLine>> {
        let (log, idx) = (self.log_path(id), self.idx_path(id));
        blocking(move || read_range(&log, &idx, from.max(1), to, Keep::First(max_bytes))).await
    }

    /// The newest lines: at most `lines` of them, whose text fits in `max_bytes` (at
    /// least the last line).
    pub async fn tail(
        &self,
        id: DeploymentId,
        lines: Seq,
        max_bytes: u64,
    ) -> io::Result<Vec<LogLine>> {
        let (log, idx) = (self.log_path(id), self.idx_path(id));
        blocking(move || {
            let count = record_count(&idx)?;
            let from = count.saturating_sub(lines) + 1;
            read_range(&log, &idx, from, count, Keep::Last(max_bytes))
        })
        .await
    }

    /// The whole log as it stands now, byte for byte the concatenation of its lines, to be
    /// read piece by piece: a log of any size is served in constant memory. Lines written
    /// after this call are not part of it.
    pub async fn open_all(&self, id: DeploymentId) -> io::Result<LogFile> {
        let (log, idx) = (self.log_path(id), self.idx_path(id));
        let (file, len) = blocking(move || {
            let Some(end) = indexed_end(&idx)? else {
                return Ok((None, 0));
            };
            // Opened after the index was read: the log holds at least `end` bytes.
            Ok((Some(File::open(&log)?), end))
        })
        .await?;
        Ok(LogFile {
            len,
            reader: file.map(tokio::fs::File::from_std),
        })
    }

    /// The whole log in memory (tests and small logs; the API streams [`LogStore::open_all`]).
    pub async fn read_all(&self, id: DeploymentId) -> io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let log = self.open_all(id).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(log.len).unwrap_or(0));
        log.into_reader().read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    /// The lines whose text as a terminal shows it (colours removed, `\r` progress
    /// collapsed) contains `needle` (lower case; ASCII case is ignored): their seqs, at
    /// most `max`, and whether more matched.
    pub async fn search(
        &self,
        id: DeploymentId,
        needle: String,
        max: usize,
    ) -> io::Result<(Vec<Seq>, bool)> {
        let (log, idx) = (self.log_path(id), self.idx_path(id));
        blocking(move || {
            let mut found = Vec::new();
            let mut from = 1;
            loop {
                let lines = read_range(&log, &idx, from, from + SEARCH_BATCH - 1, Keep::All)?;
                let Some(last) = lines.last().map(|l| l.seq) else {
                    return Ok((found, false));
                };
                for line in lines {
                    if protocol::ansi::plain(&line.line)
                        .to_ascii_lowercase()
                        .contains(&needle)
                    {
                        if found.len() == max {
                            return Ok((found, true));
                        }
                        found.push(line.seq);
                    }
                }
                from = last + 1;
            }
        })
        .await
    }

    /// A writer, on the calling thread: for the blocking pool only.
    pub fn writer_blocking(&self, id: DeploymentId) -> io::Result<LogWriter> {
        LogWriter::open(&self.log_path(id), &self.idx_path(id))
    }

    /// Lines and bytes of the log of `id`, on the calling thread.
    pub fn size_blocking(&self, id: DeploymentId) -> io::Result<(Seq, u64)> {
        let lines = record_count(&self.idx_path(id))?;
        Ok((lines, indexed_end(&self.idx_path(id))?.unwrap_or(0)))
    }

    /// Lines `from..=to`, on the calling thread.
    pub fn read_blocking(&self, id: DeploymentId, from: Seq, to: Seq) -> io::Result<Vec<LogLine>> {
        read_range(
            &self.log_path(id),
            &self.idx_path(id),
            from.max(1),
            to,
            Keep::All,
        )
    }

    /// Removes the log of `id`, on the calling thread.
    pub fn remove_blocking(&self, id: DeploymentId) -> io::Result<()> {
        for path in [self.log_path(id), self.idx_path(id)] {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    pub async fn remove(&self, id: DeploymentId) -> io::Result<()> {
        for path in [self.log_path(id), self.idx_path(id)] {
            match tokio::fs::remove_file(path).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A log opened for reading whole: `len` bytes, read with [`LogFile::into_reader`].
#[derive(Debug)]
pub struct LogFile {
    pub len: u64,
    reader: Option<tokio::fs::File>,
}

impl LogFile {
    /// Exactly `len` bytes (none when the log does not exist yet).
    pub fn into_reader(self) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
        use tokio::io::AsyncReadExt;
        let len = self.len;
        match self.reader {
            Some(file) => tokio_util::either::Either::Left(file.take(len)),
            None => tokio_util::either::Either::Right(tokio::io::empty()),
        }
    }

    /// The same bytes as pieces of at most `chunk` bytes, each read when the consumer
    /// asks for it: an HTTP body that takes the client's pace.
    pub fn into_stream(
        self,
        chunk: usize,
    ) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static {
        tokio_util::io::ReaderStream::with_capacity(self.into_reader(), chunk)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("log store task failed: {e}")))?
}

/// Where the last indexed line ends, or `None` when there is no index.
fn indexed_end(idx: &Path) -> io::Result<Option<u64>> {
    let mut file = match File::open(idx) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let records = file.metadata()?.len() / RECORD;
    if records == 0 {
        return Ok(Some(0));
    }
    file.seek(SeekFrom::Start((records - 1) * RECORD))?;
    let mut rec = [0u8; 16];
    file.read_exact(&mut rec)?;
    Ok(Some(decode(&rec).0))
}

fn decode(rec: &[u8]) -> (u64, i64) {
    let mut end = [0u8; 8];
    let mut ms = [0u8; 8];
    end.copy_from_slice(&rec[..8]);
    ms.copy_from_slice(&rec[8..16]);
    (u64::from_le_bytes(end), i64::from_le_bytes(ms))
}

/// Which lines of a range a read keeps when their text exceeds a byte budget.
#[derive(Debug, Clone, Copy)]
enum Keep {
    All,
    /// The first lines that fit (at least one).
    First(u64),
    /// The last lines that fit (at least one).
    Last(u64),
}

/// How many lines the index holds (0 without an index).
fn record_count(idx: &Path) -> io::Result<Seq> {
    match std::fs::metadata(idx) {
        Ok(meta) => Ok(meta.len() / RECORD),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn read_range(log: &Path, idx: &Path, from: Seq, to: Seq, keep: Keep) -> io::Result<Vec<LogLine>> {
    let mut idx_file = match File::open(idx) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let count = idx_file.metadata()?.len() / RECORD;
    let to = to.min(count);
    if from > to {
        return Ok(Vec::new());
    }
    // Read the record before `from` too: its end is where line `from` starts.
    let first_record = from - 1;
    let skip_start = first_record == 0;
    let start_record = if skip_start { 0 } else { first_record - 1 };
    idx_file.seek(SeekFrom::Start(start_record * RECORD))?;
    let records = to - start_record;
    let mut raw = vec![0u8; (records * RECORD) as usize];
    idx_file.read_exact(&mut raw)?;
    let mut entries: Vec<(u64, i64)> = raw.chunks_exact(RECORD as usize).map(decode).collect();
    let mut start = if skip_start { 0 } else { entries.remove(0).0 };
    let mut from = from;
    // The index alone tells each line's length: cut the range before reading its text.
    match keep {
        Keep::All => {}
        Keep::First(max) => {
            let fits = entries
                .iter()
                .position(|(end, _)| end - start > max)
                .unwrap_or(entries.len())
                .max(1);
            entries.truncate(fits);
        }
        Keep::Last(max) => {
            let end = entries.last().map_or(start, |e| e.0);
            // Line k of the range starts where line k - 1 ends.
            let start_of = |k: usize| if k == 0 { start } else { entries[k - 1].0 };
            let mut first = entries.len() - 1;
            while first > 0 && end - start_of(first - 1) <= max {
                first -= 1;
            }
            if first > 0 {
                start = entries[first - 1].0;
                from += first as Seq;
                entries.drain(..first);
            }
        }
    }
    let end = entries.last().map_or(start, |e| e.0);
    let mut bytes = vec![0u8; (end - start) as usize];
    let mut log_file = File::open(log)?;
    log_file.seek(SeekFrom::Start(start))?;
    log_file.read_exact(&mut bytes)?;
    let mut lines = Vec::with_capacity(entries.len());
    let mut at = start;
    for (n, (line_end, ms)) in entries.into_iter().enumerate() {
        let slice = &bytes[(at - start) as usize..(line_end - start) as usize];
        lines.push(LogLine {
            seq: from + n as Seq,
            line: String::from_utf8_lossy(slice).into_owned(),
            timestamp: crate::time::from_millis(ms),
            stream: None,
        });
        at = line_end;
    }
    Ok(lines)
}

/// The single writer of one deployment's log. Its methods block: call them through
/// [`LogWriter::append`], which runs them on the blocking pool.
#[derive(Debug)]
pub struct LogWriter {
    log: File,
    idx: File,
    end: u64,
    last_seq: Seq,
}

impl LogWriter {
    fn open(log_path: &Path, idx_path: &Path) -> io::Result<LogWriter> {
        let mut idx = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(idx_path)?;
        let mut idx_len = idx.metadata()?.len();
        if idx_len % RECORD != 0 {
            // A torn record from a crash: drop it.
            idx_len -= idx_len % RECORD;
            idx.set_len(idx_len)?;
        }
        let last_seq = idx_len / RECORD;
        let end = if last_seq == 0 {
            0
        } else {
            idx.seek(SeekFrom::Start(idx_len - RECORD))?;
            let mut rec = [0u8; 16];
            idx.read_exact(&mut rec)?;
            decode(&rec).0
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        if log.metadata()?.len() != end {
            log.set_len(end)?;
        }
        Ok(LogWriter {
            log,
            idx,
            end,
            last_seq,
        })
    }

    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Bytes the log takes on disk: its lines and their index records.
    pub fn disk_bytes(&self) -> u64 {
        self.end + self.last_seq * RECORD
    }

    /// Bytes one more line of `line_len` bytes would add on disk.
    pub fn cost(line_len: usize) -> u64 {
        line_len as u64 + RECORD
    }

    /// Appends `lines` (each at most 16 KiB, normally ending in `\n`) and returns them
    /// numbered. Runs on the blocking pool; the writer comes back with the result.
    pub async fn append(mut self, lines: Vec<String>) -> (LogWriter, io::Result<Vec<LogLine>>) {
        let joined = tokio::task::spawn_blocking(move || {
            let result = self.append_blocking(lines);
            (self, result)
        })
        .await;
        match joined {
            Ok(pair) => pair,
            // The closure does not panic; if the pool is gone the runtime is shutting down.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Drops the lines after `keep` (a cluster node whose lines the others refused:
    /// its copy must stay the same as theirs). On the calling thread.
    pub fn truncate_blocking(&mut self, keep: Seq) -> io::Result<()> {
        if keep >= self.last_seq {
            return Ok(());
        }
        let end = if keep == 0 {
            0
        } else {
            let mut rec = [0u8; 16];
            self.idx.seek(SeekFrom::Start((keep - 1) * RECORD))?;
            self.idx.read_exact(&mut rec)?;
            decode(&rec).0
        };
        self.idx.set_len(keep * RECORD)?;
        self.log.set_len(end)?;
        self.end = end;
        self.last_seq = keep;
        Ok(())
    }

    /// Appends on the calling thread: for the blocking pool only.
    pub fn append_blocking(&mut self, lines: Vec<String>) -> io::Result<Vec<LogLine>> {
        self.append_at_blocking(lines, chrono::Utc::now())
    }

    /// Appends lines written at `now` (a copy of another node's lines keeps their time).
    pub fn append_at_blocking(
        &mut self,
        lines: Vec<String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> io::Result<Vec<LogLine>> {
        let ms = now.timestamp_millis();
        let timestamp = crate::time::format(now);
        let mut bytes = Vec::new();
        let mut records = Vec::with_capacity(lines.len() * RECORD as usize);
        let mut end = self.end;
        for line in &lines {
            bytes.extend_from_slice(line.as_bytes());
            end += line.len() as u64;
            records.extend_from_slice(&end.to_le_bytes());
            records.extend_from_slice(&ms.to_le_bytes());
        }
        self.log.write_all(&bytes)?;
        self.idx.write_all(&records)?;
        self.end = end;
        let first = self.last_seq + 1;
        self.last_seq += lines.len() as Seq;
        Ok(lines
            .into_iter()
            .enumerate()
            .map(|(n, line)| LogLine {
                seq: first + n as Seq,
                line,
                timestamp: timestamp.clone(),
                stream: None,
            })
            .collect())
    }
}

/// Cuts a byte stream (build output, git's stderr) into log lines: each ends with `\n`,
/// none is longer than 16 KiB (a longer line is split at a character boundary), and
/// invalid UTF-8 becomes U+FFFD. ANSI escape codes and `\r` pass through untouched.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            self.partial.push(b);
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                split_long(String::from_utf8_lossy(&line).into_owned(), &mut out);
            } else if self.partial.len() >= 4 * MAX_LINE_BYTES {
                // Keep memory bounded for output that never ends a line.
                let cut = utf8_boundary(&self.partial, MAX_LINE_BYTES);
                let rest = self.partial.split_off(cut);
                let head = std::mem::replace(&mut self.partial, rest);
                out.push(String::from_utf8_lossy(&head).into_owned());
            }
        }
        out
    }

    /// What is left at the end of the stream, as a last line ending in `\n`.
    pub fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let mut line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            line.push('\n');
            split_long(line, &mut out);
        }
        out
    }
}

fn utf8_boundary(bytes: &[u8], max: usize) -> usize {
    let mut cut = max.min(bytes.len());
    while cut > 0 && cut < bytes.len() && (bytes[cut] & 0b1100_0000) == 0b1000_0000 {
        cut -= 1;
    }
    cut
}

fn split_long(mut line: String, out: &mut Vec<String>) {
    while line.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = line.split_off(cut);
        out.push(std::mem::replace(&mut line, rest));
    }
    out.push(line);
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncating_drops_the_last_lines_and_appending_goes_on_from_there() {
        let dir = std::env::temp_dir().join(format!("slipway-truncate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LogStore::new(&dir).expect("store");
        let mut writer = store.writer_blocking(1).expect("writer");
        writer
            .append_blocking(vec!["a\n".into(), "b\n".into(), "c\n".into()])
            .expect("append");
        writer.truncate_blocking(1).expect("truncate");
        let again = writer.append_blocking(vec!["x\n".into()]).expect("append");
        assert_eq!(again[0].seq, 2);
        drop(writer);
        let lines = store.read_blocking(1, 1, 10).expect("read");
        let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(text, ["a\n", "x\n"]);
        assert_eq!(store.size_blocking(1).expect("size").0, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    use super::*;

    #[test]
    fn splitter_keeps_newlines_and_partial_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"one\ntw"), vec!["one\n"]);
        assert_eq!(
            s.push(b"o\n\x1b[31mred\x1b[0m\r\n"),
            vec!["two\n", "\x1b[31mred\x1b[0m\r\n"]
        );
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish(), vec!["tail\n"]);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn long_lines_are_split_at_16_kib_on_char_boundaries() {
        let mut s = LineSplitter::default();
        let long = "é".repeat(MAX_LINE_BYTES) + "\n"; // 2 bytes a char
        let lines = s.push(long.as_bytes());
        assert!(lines.len() >= 2);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE_BYTES));
        assert_eq!(lines.concat(), long);
        assert!(lines.last().is_some_and(|l| l.ends_with('\n')));
    }

    #[tokio::test]
    async fn store_appends_reads_ranges_and_survives_a_torn_write()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempdir();
        std::fs::create_dir_all(&dir)?;
        let store = LogStore::new(&dir)?;
        let w = store.writer(7).await?;
        let (w, lines) = w
            .append(vec!["a\n".into(), "bb\n".into(), "ccc\n".into()])
            .await;
        let lines = lines?;
        assert_eq!(
            lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(w.last_seq(), 3);
        drop(w);
        assert_eq!(store.count(7).await?, 3);
        let got = store.read(7, 2, 3).await?;
        assert_eq!(
            got.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            vec!["bb\n", "ccc\n"]
        );
        assert_eq!(got[0].seq, 2);
        assert_eq!(store.read(7, 1, 99).await?.len(), 3);
        assert!(store.read(7, 4, 9).await?.is_empty());
        assert_eq!(store.read_all(7).await?, b"a\nbb\nccc\n");

        // A crash after the log write but before the index write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("7.log"))
            .and_then(|mut f| f.write_all(b"torn"))?;
        let w = store.writer(7).await?;
        assert_eq!(w.last_seq(), 3);
        let (_w, more) = w.append(vec!["d\n".into()]).await;
        assert_eq!(more?[0].seq, 4);
        assert_eq!(store.read_all(7).await?, b"a\nbb\nccc\nd\n");
        assert!(store.read_all(8).await?.is_empty());
        std::fs::remove_dir_all(dir).ok();
        Ok(())
    }

    #[tokio::test]
    async fn bounded_reads_cut_by_bytes_and_keep_at_least_a_line()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempdir().with_extension("bounded");
        let store = LogStore::new(&dir)?;
        // Lines of 10, 20, 30, 40 and 50 bytes.
        let lines: Vec<String> = (1..=5)
            .map(|n| format!("{}\n", "x".repeat(10 * n - 1)))
            .collect();
        let (_w, written) = store.writer(3).await?.append(lines.clone()).await;
        written?;
        let seqs = |got: &[LogLine]| got.iter().map(|l| l.seq).collect::<Vec<_>>();
        // The first lines that fit: 10 + 20 + 30 <= 60 < 100.
        assert_eq!(seqs(&store.read_bounded(3, 1, 5, 60).await?), [1, 2, 3]);
        assert_eq!(seqs(&store.read_bounded(3, 2, 5, 49).await?), [2]);
        assert_eq!(
            seqs(&store.read_bounded(3, 4, 5, 1).await?),
            [4],
            "one line at least"
        );
        // The newest lines that fit: 50 + 40 <= 90 < 120.
        let tail = store.tail(3, 10, 90).await?;
        assert_eq!(seqs(&tail), [4, 5]);
        assert_eq!(tail[0].line, lines[3]);
        assert_eq!(seqs(&store.tail(3, 2, u64::MAX).await?), [4, 5]);
        assert_eq!(
            seqs(&store.tail(3, 10, 1).await?),
            [5],
            "the last line at least"
        );
        assert_eq!(seqs(&store.tail(3, 10, 150).await?), [1, 2, 3, 4, 5]);
        assert!(store.tail(4, 10, 100).await?.is_empty());
        assert_eq!(store.read_all(3).await?, lines.concat().into_bytes());
        std::fs::remove_dir_all(dir).ok();
        Ok(())
    }

    fn tempdir() -> PathBuf {
        std::env::temp_dir().join(format!(
            "slipway-logstore-{}-{}",
            std::process::id(),
            line!()
        ))
    }
}
