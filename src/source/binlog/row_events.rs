//! The events that carry rows: TABLE_MAP (a table id's schema), the rows events themselves,
//! and MySQL's compressed transaction payloads that hold both.

use super::*;

/// A table id's meaning in the current stream.
pub(super) enum TableEntry {
    /// Not captured: its rows events are skipped without decoding.
    Ignored,
    /// Captured: the raw TABLE_MAP body (to notice changes) and its decoder.
    Captured(Vec<u8>, Arc<TableDecoder>),
}

/// The next version offset of a run of row images without offsets of their own, and the end
/// of the event holding them (versions must stay inside it to stay unique).
#[derive(Debug, Clone, Copy)]
pub(super) struct Packed {
    pub(super) next: u32,
    pub(super) end: u32,
}

impl BinlogReader {
    /// The server that wrote the binlog; every stream and file starts with a format
    /// description that says, so the default only serves events fed without one.
    pub(super) fn flavor(&self) -> Flavor {
        self.fde.as_ref().map_or(Flavor::MariaDb, |f| f.flavor)
    }

    pub(super) fn post_header_len(&self, event_type: u8, default: usize) -> usize {
        self.fde
            .as_ref()
            .map_or(default, |f| f.post_header_len(event_type, default))
    }

    pub(super) fn table_id_len(&self, event_type: u8) -> usize {
        // Servers before MySQL 5.1.4 wrote 4-byte table ids with a 6-byte post-header.
        if self.post_header_len(event_type, 8) == 6 {
            4
        } else {
            6
        }
    }

    pub(super) fn on_table_map(
        &mut self,
        h: &EventHeader,
        body: &[u8],
    ) -> Result<Decoded, BinlogError> {
        let head = table_map::parse_head(body, self.table_id_len(kind::TABLE_MAP))
            .map_err(|e| self.error(h, format!("table map: {e}")))?;
        let table_id = head.table_id;
        if !self.include.contains(&head.table) {
            self.tables.insert(table_id, TableEntry::Ignored);
            return Ok(Decoded::Nothing);
        }
        if let Some(TableEntry::Captured(raw, _)) = self.tables.get(&table_id)
            && raw.as_slice() == body
        {
            return Ok(Decoded::Nothing);
        }
        let table = head.table.clone();
        let key = self.keys.get(&head.table).map(Vec::as_slice);
        let mut decoder = table_map::parse_columns(head, &self.collations, key, self.flavor())
            .map_err(|source| BinlogError::Table {
                position: self.at.position(h.log_pos.saturating_sub(h.event_size)),
                table: table.clone(),
                source: Box::new(source),
            })?;
        // Comments are not in the binlog: keep the ones known for the same column names.
        if let Some(known) = self.schemas.get(&table)
            && let Some(schema) = Arc::get_mut(&mut decoder.schema)
        {
            for c in &mut schema.columns {
                c.comment = known
                    .columns
                    .iter()
                    .find(|k| k.name == c.name)
                    .and_then(|k| k.comment.clone());
            }
        }
        match self.schemas.get(&table) {
            Some(known) if **known == *decoder.schema => decoder.schema = known.clone(),
            _ => {
                if !decoder.hidden.is_empty() {
                    tracing::info!(%table, hidden_columns = decoder.hidden.len(), "the table map names hidden generated columns of functional indexes, which row images never hold; they are left out of the captured rows");
                }
                self.schemas.insert(table, decoder.schema.clone());
            }
        }
        self.tables.insert(
            table_id,
            TableEntry::Captured(body.to_vec(), Arc::new(decoder)),
        );
        Ok(Decoded::Nothing)
    }

    pub(super) fn on_rows(&mut self, h: &EventHeader, body: &[u8]) -> Result<Decoded, BinlogError> {
        let table_id_len = self.table_id_len(h.event_type);
        let table_id = Cursor::new(body)
            .uint_le(table_id_len, "rows table id")
            .map_err(|e| self.error(h, e.to_string()))?;
        let decoder = match self.tables.get(&table_id) {
            Some(TableEntry::Ignored) => {
                self.filtered += 1;
                return Ok(Decoded::Nothing);
            }
            Some(TableEntry::Captured(_, d)) => d.clone(),
            None => {
                return Err(self.error(
                    h,
                    format!("rows event for table id {table_id} without a preceding table map"),
                ));
            }
        };
        let event_start = h.log_pos.checked_sub(h.event_size).ok_or_else(|| {
            self.error(
                h,
                "rows event without a file position (log_pos < event size)",
            )
        })?;
        let mut ev = rows::parse_rows(
            h.event_type,
            body,
            table_id_len,
            Some((decoder.width(), &decoder.hidden)),
        )
        .map_err(|e| self.error(h, format!("table {}: {e}", decoder.schema.id)))?;
        // Versions are byte offsets of row images in the file. Compressed images (MariaDB's
        // compressed rows events, MySQL's transaction payloads) have no offsets of their own:
        // they count up from the start of the compressed block, which keeps them unique and
        // ordered as long as the block has more bytes than images.
        let block_start = event_start + HEADER_LEN + ev.rows.pos() as u32;
        let inflated;
        let mut c = if ev.compressed {
            inflated = compressed::uncompress(ev.rows.rest())
                .map_err(|e| self.error(h, format!("table {}: rows: {e}", decoder.schema.id)))?;
            Cursor::new(&inflated[..])
        } else {
            ev.rows
        };
        let mut counter = match (&self.packed, ev.compressed) {
            (Some(p), _) => Some(*p),
            (None, true) => Some(Packed {
                next: block_start,
                end: h.log_pos,
            }),
            (None, false) => None,
        };
        let too_dense = |this: &Self| {
            this.error(
                h,
                format!(
                    "table {}: this compressed event holds more row images than it has bytes, \
                     so they cannot get distinct versions; set log_bin_compress=OFF (MariaDB) or \
                     binlog_transaction_compression=OFF (MySQL) on the server",
                    decoder.schema.id
                ),
            )
        };
        let mut version_offset = |c: &Cursor<'_>| -> Option<u32> {
            match &mut counter {
                Some(p) => {
                    let offset = (p.next < p.end).then_some(p.next)?;
                    p.next += 1;
                    Some(offset)
                }
                None => Some(event_start + HEADER_LEN + c.pos() as u32),
            }
        };
        let mut changes = Vec::new();
        let mut index = 0u32;
        let mut zero_dates = 0;
        while !c.is_empty() {
            let offset = version_offset(&c).ok_or_else(|| too_dense(self))?;
            let mut next = |c: &mut Cursor<'_>| rows::decode_row(&decoder, c, &mut zero_dates);
            let first = next(&mut c);
            let (first, second) = match (ev.kind, first) {
                (RowsKind::Update, Ok(before)) => {
                    let after_offset = version_offset(&c).ok_or_else(|| too_dense(self))?;
                    let after = if ev.partial {
                        rows::decode_partial_after(&decoder, &mut c, &before, &mut zero_dates)
                    } else {
                        next(&mut c)
                    };
                    (before, Some((after_offset, after)))
                }
                (_, Ok(row)) => (row, None),
                (_, Err(e)) => {
                    return Err(self.error(h, format!("table {}: {e}", decoder.schema.id)));
                }
            };
            let source = SourceInfo {
                origin: self.at.origin(event_start),
                pos: u64::from(event_start),
                row: index,
                server_id: h.server_id,
                ts_ms: event_ms(h.timestamp, self.at.commit_us()),
                snapshot: false,
                query: self.at.annotation.clone(),
                transaction: None,
            };
            // The source moves into the (usually only) change: no reference counts touched.
            let change = |op, before, after, offset, source| Change {
                table: decoder.schema.clone(),
                op,
                before,
                after,
                version: Version::at(self.at.file_seq, offset),
                source,
            };
            match (ev.kind, second) {
                (RowsKind::Write, _) => {
                    changes.push(change(Op::Create, None, Some(first), offset, source))
                }
                (RowsKind::Delete, _) => {
                    changes.push(change(Op::Delete, Some(first), None, offset, source))
                }
                (RowsKind::Update, Some((after_offset, after))) => {
                    let after = after
                        .map_err(|e| self.error(h, format!("table {}: {e}", decoder.schema.id)))?;
                    let schema = &decoder.schema;
                    if schema.key_values(&first).eq(schema.key_values(&after)) {
                        changes.push(change(Op::Update, Some(first), Some(after), offset, source));
                    } else {
                        // A new primary key is a different document: delete the old one.
                        let deleted = change(Op::Delete, Some(first), None, offset, source.clone());
                        changes.push(deleted);
                        changes.push(change(Op::Create, None, Some(after), after_offset, source));
                    }
                }
                (RowsKind::Update, None) => unreachable!("updates always read two images"),
            }
            index += 1;
        }
        self.zero_dates += zero_dates;
        if let (Some(p), Some(counted)) = (&mut self.packed, counter) {
            *p = counted;
        }
        self.at.place_in_transaction(&mut changes);
        // Changes after a savepoint wait for the transaction's end (a ROLLBACK TO may undo
        // them), an XA transaction's prepared changes for its commit.
        let Some(changes) = self.savepoints.hold(changes) else {
            return Ok(Decoded::Nothing);
        };
        Ok(match self.xa.hold(changes) {
            Some(changes) => Decoded::Changes(changes),
            None => Decoded::Nothing,
        })
    }

    /// A MySQL compressed transaction: its events go through [`Self::on_event`] as if read
    /// from the file, with the payload event's position, and row versions counted from its
    /// start.
    pub(super) fn on_payload(
        &mut self,
        h: &EventHeader,
        body: &[u8],
    ) -> Result<Decoded, BinlogError> {
        if self.packed.is_some() {
            return Err(self.error(h, "a transaction payload inside a transaction payload"));
        }
        let bytes = payload::events(body).map_err(|e| self.error(h, format!("{e}")))?;
        let start = h.log_pos.checked_sub(h.event_size).ok_or_else(|| {
            self.error(
                h,
                "transaction payload without a file position (log_pos < event size)",
            )
        })?;
        self.packed = Some(Packed {
            next: start + HEADER_LEN,
            end: h.log_pos,
        });
        let decoded = self.on_payload_events(h, &bytes);
        self.packed = None;
        decoded
    }

    pub(super) fn on_payload_events(
        &mut self,
        h: &EventHeader,
        bytes: &[u8],
    ) -> Result<Decoded, BinlogError> {
        let (mut changes, mut committed) = (Vec::new(), false);
        for event in file::sequence(bytes, false) {
            let (inner, body) =
                event.map_err(|e| self.error(h, format!("transaction payload: {e}")))?;
            // Inner events carry no file position of their own.
            let inner = EventHeader {
                log_pos: h.log_pos,
                event_size: h.event_size,
                ..inner
            };
            match self.on_event(&inner, body)? {
                Decoded::Nothing => {}
                Decoded::Changes(c) => changes.extend(c),
                Decoded::Commit(_) => committed = true,
                Decoded::Transaction(c, _) => {
                    changes.extend(c);
                    committed = true;
                }
            }
        }
        Ok(if committed {
            Decoded::Transaction(changes, self.commit_position(h))
        } else {
            Decoded::Changes(changes)
        })
    }
}
