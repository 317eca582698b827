//! The topics this broker holds, their partitions' logs, and the admin operations on them.
//!
//! ```text
//! data_dir/
//!   .lock            one broker per data directory
//!   topics.json      cluster id and every topic: partitions, replication factor, configs
//!   orders-0/        one log directory per partition (see crate::log)
//!   orders-1/
//! ```
//!
//! Admin operations are serialized. Each orders its steps so a crash leaves a state the next
//! start can finish: create opens the logs before recording the topic; delete records the
//! deletion before removing directories; partition directories that no recorded topic owns
//! are removed at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Partition, TopicNameError, validate_topic_name};
use crate::log::topic_config::{TOPIC_CONFIG_KEYS, TopicConfigError, apply_topic_configs};
use crate::log::{DirLock, Log, LogConfig, LogError, write_atomically};

/// Name of the topics file in the data directory.
pub const TOPICS_FILE: &str = "topics.json";

/// What is recorded about a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Number of partitions.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: u32,
    /// Configs set on the topic (Kafka names); the rest take the broker defaults.
    pub configs: BTreeMap<String, String>,
    /// Created from the cluster metadata (the controller owns it: it is deleted here when the
    /// cluster deletes it), not by this broker alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
}

/// A topic and its open partitions.
#[derive(Debug)]
pub struct Topic {
    /// The name.
    pub name: String,
    /// What is recorded.
    pub meta: TopicMeta,
    /// The log configuration in force (defaults plus the topic's configs).
    pub config: Arc<LogConfig>,
    /// Partitions by number.
    pub partitions: Vec<Arc<Partition>>,
}

/// Why an admin operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such topic.
    #[error("topic {name:?} does not exist")]
    UnknownTopic {
        /// The name asked for.
        name: String,
    },
    /// The topic exists.
    #[error("topic {name:?} already exists")]
    TopicExists {
        /// The name.
        name: String,
    },
    /// The name breaks the rules.
    #[error(transparent)]
    InvalidName(#[from] TopicNameError),
    /// A partition count out of range.
    #[error("{reason}")]
    InvalidPartitions {
        /// What was wrong, with the value and the limit.
        reason: String,
    },
    /// More replicas than brokers.
    #[error(
        "replication factor {requested} is out of range: this cluster has {available} broker(s)"
    )]
    InvalidReplicationFactor {
        /// Requested.
        requested: u32,
        /// Brokers available.
        available: u32,
    },
    /// A config key or value was refused.
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    /// The disk failed.
    #[error(transparent)]
    Storage(#[from] LogError),
    /// The cluster's controller did not take or spread the change in time.
    #[error("cluster: {reason}")]
    Cluster {
        /// What went wrong.
        reason: String,
    },
    /// The operation is not available on a broker of a cluster yet.
    #[error("{operation} is not available in a cluster yet (single brokers only)")]
    NotInCluster {
        /// The operation refused.
        operation: &'static str,
    },
}

/// Why the registry could not open.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A log or file failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// `topics.json` is unreadable.
    #[error("cannot read {path}: {reason}")]
    TopicsFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Partition directories exist but no topics file: refusing to guess.
    #[error(
        "{dir} holds partition directories (e.g. {example}) but no {TOPICS_FILE}; refusing to start rather than lose or misread data"
    )]
    MissingTopicsFile {
        /// The data directory.
        dir: PathBuf,
        /// One of the directories.
        example: String,
    },
}

/// The topics of this broker. Reads take a snapshot; admin operations are serialized.
#[derive(Debug)]
pub struct Registry {
    data_dir: PathBuf,
    defaults: LogConfig,
    max_partitions: u32,
    cluster_id: String,
    topics: RwLock<Arc<BTreeMap<String, Arc<Topic>>>>,
    admin: tokio::sync::Mutex<()>,
    _lock: DirLock,
}

/// `name-N` for a directory that looks like a partition directory.
fn looks_like_partition_dir(name: &str) -> bool {
    match name.rsplit_once('-') {
        Some((topic, n)) => {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && validate_topic_name(topic).is_ok()
        }
        None => false,
    }
}

fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl Registry {
    /// Opens the data directory: locks it, reads the topics file (creating it, with a new
    /// cluster id, in an empty directory), opens every partition log (running recovery) and
    /// removes partition directories no topic owns.
    pub async fn open(
        data_dir: PathBuf,
        defaults: LogConfig,
        max_partitions: u32,
    ) -> Result<Registry, RegistryError> {
        let dir = data_dir.clone();
        let (lock, file) = tokio::task::spawn_blocking(move || Self::load(&dir))
            .await
            .expect("registry load task panicked")?;
        let mut topics = BTreeMap::new();
        for (name, meta) in &file.topics {
            let config = Arc::new(apply_topic_configs(&defaults, &meta.configs).map_err(|e| {
                RegistryError::TopicsFile {
                    path: data_dir.join(TOPICS_FILE),
                    reason: format!("topic {name}: {e}"),
                }
            })?);
            let mut partitions = Vec::with_capacity(meta.partitions as usize);
            for p in 0..meta.partitions {
                let log = Log::open(partition_dir(&data_dir, name, p), (*config).clone()).await?;
                partitions.push(Arc::new(Partition::new(
                    name.clone(),
                    p,
                    log,
                    !meta.cluster,
                )));
            }
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name: name.clone(),
                    meta: meta.clone(),
                    config,
                    partitions,
                }),
            );
        }
        let registry = Registry {
            data_dir,
            defaults,
            max_partitions,
            cluster_id: file.cluster_id,
            topics: RwLock::new(Arc::new(topics)),
            admin: tokio::sync::Mutex::new(()),
            _lock: lock,
        };
        registry.remove_orphans().await?;
        Ok(registry)
    }

    fn load(dir: &Path) -> Result<(DirLock, TopicsFile), RegistryError> {
        std::fs::create_dir_all(dir).map_err(LogError::io("create directory", dir))?;
        let lock = DirLock::acquire(dir)?;
        let path = dir.join(TOPICS_FILE);
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<TopicsFile>(&bytes).map_err(|e| {
                RegistryError::TopicsFile {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                for entry in std::fs::read_dir(dir).map_err(LogError::io("list", dir))? {
                    let entry = entry.map_err(LogError::io("list", dir))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if entry.path().is_dir() && looks_like_partition_dir(&name) {
                        return Err(RegistryError::MissingTopicsFile {
                            dir: dir.to_path_buf(),
                            example: name,
                        });
                    }
                }
                let file = TopicsFile {
                    version: 1,
                    cluster_id: format!("{:032x}", rand::random::<u128>()),
                    topics: BTreeMap::new(),
                };
                write_topics(dir, &file)?;
                file
            }
            Err(e) => return Err(LogError::io("read", &path)(e).into()),
        };
        if file.version != 1 {
            return Err(RegistryError::TopicsFile {
                path,
                reason: format!("version {} is not supported (expected 1)", file.version),
            });
        }
        Ok((lock, file))
    }

    async fn remove_orphans(&self) -> Result<(), LogError> {
        let topics = self.topics();
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            for entry in std::fs::read_dir(&dir).map_err(LogError::io("list", &dir))? {
                let entry = entry.map_err(LogError::io("list", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !entry.path().is_dir() || !looks_like_partition_dir(&name) {
                    continue;
                }
                let owned = topics.values().any(|t| (0..t.meta.partitions).any(|p| format!("{}-{p}", t.name) == name));
                if !owned {
                    tracing::warn!(dir = %entry.path().display(), "removing partition directory no topic owns (an interrupted create or delete)");
                    std::fs::remove_dir_all(entry.path()).map_err(LogError::io("remove", entry.path()))?;
                }
            }
            Ok(())
        })
        .await
        .expect("orphan removal task panicked")
    }

    /// The cluster id, made when the data directory was first used.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Configuration new topics start from.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// A snapshot of every topic.
    pub fn topics(&self) -> Arc<BTreeMap<String, Arc<Topic>>> {
        self.topics.read().clone()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// One partition.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<Arc<Partition>> {
        self.topics
            .read()
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize).cloned())
    }

    fn snapshot_file(&self, topics: &BTreeMap<String, Arc<Topic>>) -> TopicsFile {
        TopicsFile {
            version: 1,
            cluster_id: self.cluster_id.clone(),
            topics: topics
                .iter()
                .map(|(k, v)| (k.clone(), v.meta.clone()))
                .collect(),
        }
    }

    async fn persist(&self, topics: &BTreeMap<String, Arc<Topic>>) -> Result<(), LogError> {
        let file = self.snapshot_file(topics);
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || write_topics(&dir, &file))
            .await
            .expect("persist task panicked")
    }

    fn check_partitions(&self, name: &str, count: u32) -> Result<(), AdminError> {
        if count == 0 || count > self.max_partitions {
            return Err(AdminError::InvalidPartitions {
                reason: format!(
                    "partition count {count} for topic {name:?} is out of range: must be between 1 and {}",
                    self.max_partitions
                ),
            });
        }
        Ok(())
    }

    async fn open_partitions(
        &self,
        name: &str,
        range: std::ops::Range<u32>,
        config: &LogConfig,
        cluster: bool,
    ) -> Result<Vec<Arc<Partition>>, AdminError> {
        let mut out = Vec::new();
        for p in range {
            match Log::open(partition_dir(&self.data_dir, name, p), config.clone()).await {
                Ok(log) => out.push(Arc::new(Partition::new(name.to_string(), p, log, !cluster))),
                Err(e) => {
                    for opened in &out {
                        let _ = opened.log().close().await;
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(out)
    }

    /// Creates a topic. `replication_factor` 0 means 1. Names starting with `__` are reserved
    /// for the broker's internal topics.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        if is_internal(name) {
            return Err(AdminError::InvalidName(TopicNameError::Reserved {
                name: name.to_string(),
            }));
        }
        self.create(name, partitions, replication_factor, configs, validate_only)
            .await
    }

    /// Creates one of the broker's own topics (`__consumer_offsets`).
    pub async fn create_internal_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        debug_assert!(is_internal(name));
        self.create(name, partitions, 1, configs, false).await
    }

    /// Opens this broker's copy of a topic the cluster metadata holds, unless it is open.
    pub async fn ensure_cluster_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        if self.topic(name).is_some() {
            return Ok(());
        }
        match self
            .create_as(name, partitions, 1, configs, false, true)
            .await
        {
            Err(AdminError::TopicExists { .. }) => Ok(()),
            other => other,
        }
    }

    async fn create(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        self.create_as(
            name,
            partitions,
            replication_factor,
            configs,
            validate_only,
            false,
        )
        .await
    }

    async fn create_as(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        cluster: bool,
    ) -> Result<(), AdminError> {
        validate_topic_name(name)?;
        self.check_partitions(name, partitions)?;
        let replication_factor = replication_factor.max(1);
        if replication_factor > 1 {
            return Err(AdminError::InvalidReplicationFactor {
                requested: replication_factor,
                available: 1,
            });
        }
        let config = apply_topic_configs(&self.defaults, &configs)?;
        let _admin = self.admin.lock().await;
        if self.topic(name).is_some() {
            return Err(AdminError::TopicExists {
                name: name.to_string(),
            });
        }
        if validate_only {
            return Ok(());
        }
        let opened = (self.open_partitions(name, 0..partitions, &config, cluster)).await?;
        let meta = TopicMeta {
            partitions,
            replication_factor,
            configs,
            cluster,
        };
        let topic = Arc::new(Topic {
            name: name.to_string(),
            meta,
            config: Arc::new(config),
            partitions: opened,
        });
        let mut next = BTreeMap::clone(&self.topics());
        next.insert(name.to_string(), topic.clone());
        if let Err(e) = self.persist(&next).await {
            for p in &topic.partitions {
                let _ = p.log().close().await;
            }
            return Err(e.into());
        }
        *self.topics.write() = Arc::new(next);
        tracing::info!(topic = name, partitions, "created topic");
        Ok(())
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(AdminError::UnknownTopic {
                name: name.to_string(),
            });
        };
        let mut next = BTreeMap::clone(&self.topics());
        next.remove(name);
        self.persist(&next).await?;
        *self.topics.write() = Arc::new(next);
        for p in &topic.partitions {
            if let Err(e) = p.log().close().await {
                tracing::warn!(topic = name, partition = p.id(), cause = %e, "closing deleted partition");
            }
            let dir = p.log().dir().to_path_buf();
            tokio::task::spawn_blocking(move || {
                std::fs::remove_dir_all(&dir).map_err(LogError::io("remove", dir))
            })
            .await
            .expect("remove task panicked")?;
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Raises a topic's partition count to `total`.
    pub async fn add_partitions(&self, name: &str, total: u32) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(AdminError::UnknownTopic {
                name: name.to_string(),
            });
        };
        let current = topic.meta.partitions;
        if total <= current {
            return Err(AdminError::InvalidPartitions {
                reason: format!(
                    "topic {name:?} has {current} partitions; the new total {total} must be larger"
                ),
            });
        }
        self.check_partitions(name, total)?;
        let added = self
            .open_partitions(name, current..total, &topic.config, topic.meta.cluster)
            .await?;
        let mut partitions = topic.partitions.clone();
        partitions.extend(added);
        let meta = TopicMeta {
            partitions: total,
            ..topic.meta.clone()
        };
        let updated = Arc::new(Topic {
            name: name.to_string(),
            meta,
            config: topic.config.clone(),
            partitions,
        });
        let mut next = BTreeMap::clone(&self.topics());
        next.insert(name.to_string(), updated);
        self.persist(&next).await?;
        *self.topics.write() = Arc::new(next);
        tracing::info!(topic = name, from = current, to = total, "added partitions");
        Ok(())
    }

    /// Sets the configs in `set` and returns those in `delete` to their defaults; the live
    /// partitions take the new configuration at once.
    pub async fn alter_configs(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(AdminError::UnknownTopic {
                name: name.to_string(),
            });
        };
        let mut configs = topic.meta.configs.clone();
        for key in delete {
            // An unknown key is an error, not a no-op.
            if !TOPIC_CONFIG_KEYS.contains(&key.as_str()) {
                return Err(TopicConfigError::UnknownKey { key: key.clone() }.into());
            }
            configs.remove(key);
        }
        configs.extend(set);
        let config = apply_topic_configs(&self.defaults, &configs)?;
        let meta = TopicMeta {
            configs,
            ..topic.meta.clone()
        };
        let updated = Arc::new(Topic {
            name: name.to_string(),
            meta,
            config: Arc::new(config.clone()),
            partitions: topic.partitions.clone(),
        });
        let mut next = BTreeMap::clone(&self.topics());
        next.insert(name.to_string(), updated);
        self.persist(&next).await?;
        *self.topics.write() = Arc::new(next);
        for p in &topic.partitions {
            p.log().update_config(config.clone())?;
        }
        tracing::info!(topic = name, "altered configs");
        Ok(())
    }

    /// Closes every partition log (syncing it).
    pub async fn close(&self) -> Result<(), LogError> {
        let mut first_error = None;
        for topic in self.topics().values() {
            for p in &topic.partitions {
                if let Err(e) = p.log().close().await {
                    tracing::error!(topic = %topic.name, partition = p.id(), cause = %e, "closing partition log");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Internal topics (`__` prefix) are the broker's: users cannot create them, and listings
/// leave them out unless asked for by name (as Kafka's `listInternal = false`).
pub fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
}

fn write_topics(dir: &Path, file: &TopicsFile) -> Result<(), LogError> {
    let bytes = serde_json::to_vec_pretty(file).expect("topics file serializes");
    write_atomically(dir, TOPICS_FILE, &bytes)
}
