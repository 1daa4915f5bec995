//! Checkpoints on an object store: one `checkpoint/<name>` object each (see
//! [`crate::checkpoint`]), created with put-if-absent so that of two
//! writers taking one name, one wins. Every provider on the store (every
//! member of a cloud-cluster) sees them.

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{Inner, backend};
use crate::checkpoint::{Checkpoint, check_name};
use crate::error::{Error, Result};

impl Inner {
    fn checkpoint_key(&self, name: &str) -> object_store::path::Path {
        self.key(&format!("checkpoint/{name}"))
    }

    /// Every checkpoint, sorted by name; an object that does not parse is
    /// an error naming it.
    pub(crate) async fn list_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let prefix = self.key("checkpoint");
        let metas = self.list_all(&prefix).await?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let Some(name) = m.location.filename().map(str::to_string) else {
                continue;
            };
            // Gone since the listing: not a checkpoint any more.
            let Some(bytes) = self.get_optional(&m.location).await? else {
                continue;
            };
            out.push(Checkpoint::from_json(&name, &bytes, m.location.as_ref())?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates `cp` unless its name exists.
    pub(crate) async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        check_name(&cp.name)?;
        let key = self.checkpoint_key(&cp.name);
        let json = cp.to_json()?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(json), opts)
            .await
        {
            Ok(_) => Ok(()),
            // (Also when the store retried this very put after a lost
            // answer: the checkpoint is there, but the caller hears it was
            // taken, never that a checkpoint it did not make is its own.)
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(crate::checkpoint::exists(&cp.name))
            }
            Err(e) => Err(backend("creating checkpoint", &key, e)),
        }
    }

    /// Removes the checkpoint `name`.
    pub(crate) async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let key = self.checkpoint_key(name);
        if self.get_optional(&key).await?.is_none() {
            return Err(Error::CheckpointNotFound {
                name: name.to_string(),
            });
        }
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend("removing checkpoint", &key, e)),
        }
    }
}
