//! `IdempotencyStore`: command ids claimed with a lease, then completed
//! with their outcome until they expire.

use std::time::Duration;

use bytes::Bytes;
use interlock::store::{BoxFuture, Claim, IdempotencyRecord, IdempotencyStore, StoreError};
use interlock::{CommandFingerprint, CommandId, StreamId, Timestamp, Version};

use super::SqlStore;
use crate::driver::Param::{Bytes as Blob, Int, OptText, Text};
use crate::driver::{Driver, SqlRow};
use crate::rows::i64_of;

/// Attempts of `claim` against concurrent claimers and releasers.
const CLAIM_ATTEMPTS: usize = 8;

impl<D: Driver> IdempotencyStore for SqlStore<D> {
    fn claim(
        &self,
        command_id: CommandId,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            let q = self.queries();
            let id = command_id.to_string();
            let until = now.plus(lease).0;
            for _ in 0..CLAIM_ATTEMPTS {
                let inserted = self.execute(q.idem_insert.clone(), &[Text(&id), Int(until)]).await?;
                if inserted == 1 {
                    return Ok(Claim::Claimed);
                }
                let row = self.fetch_optional(q.idem_select.clone(), &[Text(&id)]).await?;
                let Some(row) = row else { continue }; // released meanwhile
                let status = row.text(0).map_err(Self::error)?;
                let row_until = row.int(1).map_err(Self::error)?;
                if row_until > now.0 {
                    if status != "done" {
                        return Ok(Claim::InProgress);
                    }
                    let stream = StreamId::new(row.text(2).map_err(Self::error)?, row.text(3).map_err(Self::error)?);
                    let stored_tenant = row.opt_text(8).map_err(Self::error)?.unwrap_or_default();
                    let tenant = crate::rows::stored_tenant(&stored_tenant).map_err(|reason| StoreError::Corrupt {
                        backend: D::NAME,
                        location: format!("idempotency record of command `{command_id}` (stream `{stream}`)"),
                        reason,
                    })?;
                    let stream = stream.in_tenant(tenant);
                    let corrupt = |what: &str| StoreError::Corrupt {
                        backend: D::NAME,
                        location: format!("idempotency record of command `{command_id}` (stream `{stream}`)"),
                        reason: what.to_owned(),
                    };
                    let version = row.int(4).map_err(Self::error)?;
                    let version =
                        u64::try_from(version).map_err(|_| corrupt(&format!("negative version {version}")))?;
                    let fingerprint = match row.opt_text(7).map_err(Self::error)? {
                        None => None,
                        Some(hex) => {
                            Some(CommandFingerprint(u64::from_str_radix(&hex, 16).map_err(|_| {
                                corrupt(&format!("fingerprint `{hex}` is not 16 hex digits"))
                            })?))
                        }
                    };
                    return Ok(Claim::Completed(IdempotencyRecord {
                        command_id,
                        version: Version(version),
                        output: Bytes::from(row.bytes(5).map_err(Self::error)?),
                        recorded_at: Timestamp(row.int(6).map_err(Self::error)?),
                        expires_at: Timestamp(row_until),
                        fingerprint,
                        stream,
                    }));
                }
                // Expired (a dead holder, or an old record): take it over.
                let params = [Text(&id), Int(until), Int(now.0)];
                if self.execute(q.idem_reclaim.clone(), &params).await? == 1 {
                    return Ok(if status == "done" {
                        Claim::Claimed
                    } else {
                        Claim::Reclaimed
                    });
                }
            }
            Ok(Claim::InProgress)
        })
    }

    fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let id = record.command_id.to_string();
            let fingerprint = record.fingerprint.map(|f| f.to_string());
            let params = [
                Text(&id),
                Int(record.expires_at.0),
                Text(record.stream.aggregate_type()),
                Text(record.stream.aggregate_id()),
                Int(i64_of(record.version.0)),
                Blob(record.output.as_ref()),
                Int(record.recorded_at.0),
                OptText(fingerprint.as_deref()),
                Text(crate::queries::tenant_of(&record.stream)),
            ];
            self.execute(self.queries().idem_complete.clone(), &params).await?;
            Ok(())
        })
    }

    fn release(&self, command_id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let id = command_id.to_string();
            self.execute(self.queries().idem_release.clone(), &[Text(&id)]).await?;
            Ok(())
        })
    }

    fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move { self.execute(self.queries().idem_purge.clone(), &[Int(now.0)]).await })
    }
}
