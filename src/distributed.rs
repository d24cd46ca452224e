//! Data-parallel training under `mpirun` (the `distributed` feature): one model trained by N
//! processes, each on a disjoint shard of every global batch.
//!
//! - The train block's `batch` stays the global batch B. Rank r takes the samples
//!   [`shard`]`(B, r, N)` of it, contiguous: ⌊B/N⌋ each, and one more for the first B mod N
//!   ranks (a rank whose shard is empty, in a last batch shorter than N, runs one sample
//!   weighted zero). Each shard's loss and gradients are its mean times shard/B, so their sum
//!   over the ranks is the global batch's mean, whatever N is (`nnc_ir::data_parallel`).
//! - A step is one compiled program per rank: its shard's forward and backward passes, the
//!   sums over the ranks (`MPI_Allreduce`, called by the program where the gradients are
//!   complete: each large gradient alone, the small ones, the loss share and the correct
//!   count, exact in f32 below 2²⁴, together), and the optimizer's update of the same sums, so
//!   the weights stay identical on every rank without being copied anywhere. Rank 0's end
//!   flag rides on the step's last sum (one float more): when rank 0 stops (last epoch, early
//!   stop, an error or Ctrl-C on its side), it joins the others' next step's sums with zeros
//!   and the flag set, and they stop there, before their update (the compiled step writes no
//!   weight before its last sum).
//! - Rank 0 broadcasts its weights and optimizer state once at the start ([`Cluster::join`]),
//!   so every rank starts from the same (initial or resumed) state.
//! - Only rank 0 runs the CLI's driver: it prints, writes the run directory and the
//!   checkpoints. The other ranks train ([`Cluster::follow`]) and share the evaluation after
//!   every epoch: each rank evaluates its shard of every batch, and the loss, the correct
//!   count and the outputs (for the confusion matrix) are summed over the ranks, so an
//!   epoch's evaluation shrinks with the ranks as its training does. Any other evaluation
//!   (the best epoch's weights restored at the end) is rank 0's alone.
//! - Dropout draws the masks a single process would draw: every rank takes the step's key,
//!   and its step starts the random stream at its shard's first sample.
//!
//! The library never prints or exits: the CLI reports and calls [`Cluster::abort`].

use std::cell::{Cell, RefCell};
use std::ops::{ControlFlow, Range};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use nnc_check::Model;
use nnc_ir::data_parallel::Shard;
use nnc_jit::{BatchData, CompiledModel, InputData, TargetData};

use crate::backend::{
    Backend, Batch, BatchInputs, BatchTargets, NamedTensor, StepResult, TrainResult,
};
use crate::error::TrainError;
use crate::metrics::EpochSums;
use crate::trainer::Trainer;

/// The samples of a global batch of `batch` that rank `rank` of `size` trains on.
pub fn shard(batch: usize, rank: usize, size: usize) -> Range<usize> {
    let (base, extra) = (batch / size, batch % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// `threads` shared by `local` ranks: each one's part, at least 1.
pub fn threads_per_rank(threads: usize, local: usize) -> usize {
    (threads / local.max(1)).max(1)
}

/// This process's place in an MPI job of several processes.
pub struct Cluster {
    universe: Universe,
    rank: usize,
    size: usize,
    /// Set by the backend when rank 0 sent the end.
    ended: Rc<Cell<bool>>,
    /// The lengths of a step's sums, in order (set when joining).
    sum_lengths: Rc<RefCell<Vec<usize>>>,
    /// Time in training steps, and the part of it in the collectives.
    timing: Rc<Cell<Timing>>,
}

/// Where a rank's training steps spent their time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// The steps, whole (gradients, the sum, the update).
    pub steps: Duration,
    /// The allreduce: the transfer, and the wait for the slowest rank.
    pub communication: Duration,
    /// The samples this rank evaluated for the job's shared evaluations.
    pub evaluated: usize,
}

/// How a rank other than 0 stopped short.
#[derive(Debug)]
pub enum FollowError {
    /// The loss or a gradient stopped being finite: on every rank at the same step, so rank 0
    /// reports it too and the job ends normally.
    Diverged(String),
    /// Anything else: the job must be aborted.
    Failed(String),
}

impl Cluster {
    /// MPI, when this process is one of several that an MPI launcher started; `None` for a
    /// plain run.
    pub fn from_env() -> Result<Option<Cluster>, String> {
        if crate::launch::launched_world_size().is_none() {
            return Ok(None);
        }
        let universe = mpi::initialize().ok_or("MPI was initialised twice")?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if size < 2 {
            return Ok(None);
        }
        Ok(Some(Cluster {
            universe,
            rank,
            size,
            ended: Rc::new(Cell::new(false)),
            sum_lengths: Rc::default(),
            timing: Rc::new(Cell::new(Timing::default())),
        }))
    }

    /// This process's rank, 0 to `size() - 1`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The JIT's threads for this rank when not told: the machine's share of each of the ranks
    /// on it (`split_shared`: those that share its memory), at least 1, so that N ranks on a
    /// machine do not each start a thread per core.
    pub fn default_threads(&self) -> usize {
        let local = self.universe.world().split_shared(0).size() as usize;
        threads_per_rank(crate::default_threads(), local)
    }

    /// Whether this is rank 0, the one that prints and writes.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Ends every process of the job (`MPI_Abort`): what a rank does after an error it cannot
    /// tell the others about, so that none waits for it forever.
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }

    /// Gives `trainer` the data-parallel backend, holding rank 0's weights and optimizer
    /// state (the initial ones, or those it resumed from). Every rank calls it at the same
    /// point.
    pub fn join(
        &self,
        trainer: &mut Trainer,
        model: &Model,
        seed: u64,
        threads: usize,
    ) -> Result<(), String> {
        let data = trainer.data();
        let mut jit =
            CompiledModel::data_parallel(model, data.input.clone(), data.targets, seed, threads)?;
        let mut params: Vec<Vec<f32>> = trainer.params().into_iter().map(|t| t.data).collect();
        let mut states: Vec<Vec<f32>> = trainer.states().into_iter().map(|t| t.data).collect();
        let world = self.universe.world();
        let root = world.process_at_rank(0);
        for t in params.iter_mut().chain(states.iter_mut()) {
            root.broadcast_into(&mut t[..]);
        }
        jit.restore(params, states)?;
        // Every shard's step sums the same lengths (those of the parameters).
        let global = model.train.as_ref().map_or(1, |t| t.batch.max(1));
        let first = shard(global, self.rank, self.size);
        let lengths = jit.sum_lengths(Shard {
            first: first.start,
            len: first.len(),
            global,
        })?;
        *self.sum_lengths.borrow_mut() = lengths;
        trainer.set_backend(Box::new(Distributed {
            jit,
            flagged: Flagged::default(),
            sum_lengths: self.sum_lengths.clone(),
            world,
            rank: self.rank,
            size: self.size,
            ended: self.ended.clone(),
            timing: self.timing.clone(),
            broken: false,
            sharing: false,
            outputs: Default::default(),
        }));
        Ok(())
    }

    /// A rank other than 0: trains epochs `first..=epochs` (the first from `sums`, resumed)
    /// in step with rank 0 until it broadcasts the end.
    pub fn follow(
        &self,
        trainer: &mut Trainer,
        first: usize,
        epochs: usize,
        mut sums: EpochSums,
    ) -> Result<(), FollowError> {
        for epoch in first..=epochs {
            match trainer.train_epoch(epoch, &mut sums, |_| ControlFlow::Continue(())) {
                // Rank 0 evaluates a complete epoch: this rank's shares of it.
                Ok(true) => {
                    trainer
                        .evaluate_epoch()
                        .map_err(|e| FollowError::Failed(e.to_string()))?;
                }
                Ok(false) => {}
                Err(_) if self.ended.get() => return Ok(()),
                Err(e @ TrainError::Diverged { .. }) => {
                    // Rank 0 saw the same and ends the run: wait for it.
                    self.wait_for_end().map_err(FollowError::Failed)?;
                    return Err(FollowError::Diverged(e.to_string()));
                }
                Err(e) => return Err(FollowError::Failed(e.to_string())),
            }
            sums = EpochSums::default();
        }
        // Rank 0 evaluates and writes after the last step; its end comes when it is done.
        self.wait_for_end().map_err(FollowError::Failed)
    }

    /// After its last epoch (or a divergence), a rank joins rank 0's next sums, whose end
    /// flag must be set.
    fn wait_for_end(&self) -> Result<(), String> {
        if self.ended.get() {
            return Ok(());
        }
        let world = self.universe.world();
        if end_sums(&world, &self.sum_lengths.borrow(), false) {
            self.ended.set(true);
            Ok(())
        } else {
            Err("rank 0 trained on after this rank's last epoch".into())
        }
    }

    /// Where this rank's training steps spent their time so far.
    pub fn timing(&self) -> Timing {
        self.timing.get()
    }

    /// A line that says where this rank ended: its step and a checksum of its weights, which
    /// is the same on every rank, and the share of communication in its steps' time.
    pub fn report(&self, trainer: &Trainer) -> String {
        let t = self.timing.get();
        format!(
            "rank {} of {}: step {}, weights checksum {:016x}, communication {:.1} % of {:.3} s \
             in training steps, {} samples evaluated",
            self.rank,
            self.size,
            trainer.step,
            checksum(&trainer.params()),
            100.0 * t.communication.as_secs_f64() / t.steps.as_secs_f64().max(1e-9),
            t.steps.as_secs_f64(),
            t.evaluated
        )
    }
}

/// FNV-1a over the tensors' names, shapes and the bits of their values.
pub fn checksum(tensors: &[NamedTensor]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for t in tensors {
        eat(t.name.as_bytes());
        for &d in &t.shape {
            eat(&(d as u64).to_le_bytes());
        }
        for v in &t.data {
            eat(&v.to_bits().to_le_bytes());
        }
    }
    h
}

/// The last sum of a step with rank 0's end flag after its values (kept: a step allocates
/// nothing).
#[derive(Default)]
struct Flagged {
    send: Vec<f32>,
    recv: Vec<f32>,
}

impl Flagged {
    /// Writes into `recv` the sum of `send` over the ranks, with the flag `end` (rank 0's;
    /// the others send 0); whether the summed flag is set.
    fn sum(
        &mut self,
        world: &SimpleCommunicator,
        send: &[f32],
        recv: &mut [f32],
        end: bool,
    ) -> bool {
        let n = send.len();
        self.send.clear();
        self.send.extend_from_slice(send);
        self.send.push(f32::from(u8::from(end)));
        self.recv.resize(n + 1, 0.0);
        world.all_reduce_into(&self.send[..], &mut self.recv[..], SystemOperation::sum());
        recv.copy_from_slice(&self.recv[..n]);
        self.recv[n] > 0.0
    }
}

/// A step's sums with zeros (rank 0 ending the run, the others waiting for that), the
/// flag on the last; whether the summed flag is set.
fn end_sums(world: &SimpleCommunicator, lengths: &[usize], end: bool) -> bool {
    let Some((&last, rest)) = lengths.split_last() else {
        return end;
    };
    for &n in rest {
        let zeros = vec![0.0f32; n];
        let mut sum = vec![0.0f32; n];
        world.all_reduce_into(&zeros[..], &mut sum[..], SystemOperation::sum());
    }
    let zeros = vec![0.0f32; last];
    let mut sum = vec![0.0f32; last];
    Flagged::default().sum(world, &zeros, &mut sum, end)
}

/// The data-parallel backend: this rank's shard through its step, which sums over the ranks.
struct Distributed {
    jit: CompiledModel,
    flagged: Flagged,
    /// The lengths of a step's sums, in order (the cluster's).
    sum_lengths: Rc<RefCell<Vec<usize>>>,
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    ended: Rc<Cell<bool>>,
    timing: Rc<Cell<Timing>>,
    /// A step failed between collectives: the ranks are out of step, only an abort ends them.
    broken: bool,
    /// Evaluation steps are the job's (see [`Backend::share_evaluation`]).
    sharing: bool,
    /// A shared evaluation step's outputs, this rank's rows and the sum (kept: reused).
    outputs: (Vec<f32>, Vec<f32>),
}

impl Distributed {
    /// This rank's shard of `batch` and its samples' data: the first sample's when it is
    /// empty (its step weighs it zero).
    fn shard<'a>(&self, batch: &Batch<'a>) -> (Shard, BatchData<'a>) {
        let r = shard(batch.size, self.rank, self.size);
        let step = Shard {
            first: r.start,
            len: r.len(),
            global: batch.size,
        };
        let r = if r.is_empty() { 0..1 } else { r };
        let part = |len: usize| {
            let per = len / batch.size.max(1);
            r.start * per..r.end * per
        };
        let data = BatchData {
            size: r.len(),
            inputs: match batch.inputs {
                BatchInputs::U8(x) => InputData::U8(&x[part(x.len())]),
                BatchInputs::F32(x) => InputData::F32(&x[part(x.len())]),
            },
            targets: match batch.targets {
                BatchTargets::Classes(t) => TargetData::Classes(&t[part(t.len())]),
                BatchTargets::Values(t) => TargetData::Values(&t[part(t.len())]),
            },
            // The whole batch's key: each rank draws its samples' part of the masks one
            // process would draw (the step starts at sample `r.start`).
            key: batch.key,
            lr: batch.lr,
        };
        (step, data)
    }

    fn whole<'a>(batch: &Batch<'a>) -> BatchData<'a> {
        BatchData {
            size: batch.size,
            inputs: match batch.inputs {
                BatchInputs::U8(x) => InputData::U8(x),
                BatchInputs::F32(x) => InputData::F32(x),
            },
            targets: match batch.targets {
                BatchTargets::Classes(t) => TargetData::Classes(t),
                BatchTargets::Values(t) => TargetData::Values(t),
            },
            key: batch.key,
            lr: batch.lr,
        }
    }
}

impl Backend for Distributed {
    fn train_step(&mut self, batch: &Batch<'_>) -> Result<TrainResult<'_>, String> {
        if self.ended.get() || self.broken {
            return Err("the distributed run has ended".into());
        }
        let start = Instant::now();
        let mut communication = Duration::ZERO;
        let (shard, part) = self.shard(batch);
        let (world, flagged) = (&self.world, &mut self.flagged);
        let out = self.jit.train_shard(&part, shard, &mut |send, recv, last| {
            let sums = Instant::now();
            let ended = if last {
                flagged.sum(world, send, recv, false)
            } else {
                world.all_reduce_into(send, recv, SystemOperation::sum());
                false
            };
            communication += sums.elapsed();
            if ended {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let out = match out {
            Ok(Some(out)) => out,
            Ok(None) => {
                self.ended.set(true);
                return Err("rank 0 ended the run".into());
            }
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        let mut t = self.timing.get();
        t.steps += start.elapsed();
        t.communication += communication;
        self.timing.set(t);
        Ok(TrainResult {
            loss_sum: out.loss * batch.size as f64,
            correct: out.correct,
            grad_norms2: out.grad_norms2,
        })
    }

    fn eval_step(&mut self, batch: &Batch<'_>) -> Result<StepResult, String> {
        if !self.sharing {
            let out = self.jit.eval_step(&Distributed::whole(batch))?;
            return Ok(StepResult {
                loss_sum: out.loss * batch.size as f64,
                correct: out.correct,
                outputs: out.outputs,
            });
        }
        if self.ended.get() || self.broken {
            return Err("the distributed run has ended".into());
        }
        // This rank's shard (an empty one evaluates the first sample and counts nothing), its
        // rows of the outputs among zeros, summed with the loss and the correct count.
        let rows = shard(batch.size, self.rank, self.size);
        let (_, part) = self.shard(batch);
        let out = self
            .jit
            .eval_step(&part)
            .inspect_err(|_| self.broken = true)?;
        let width = out.outputs.len() / part.size.max(1);
        let correct = if rows.is_empty() { 0.0 } else { out.correct };
        let send = [out.loss * rows.len() as f64, correct];
        let mut sums = [0.0f64; 2];
        let (mine, all) = &mut self.outputs;
        mine.clear();
        mine.resize(batch.size * width, 0.0);
        if !rows.is_empty() {
            mine[rows.start * width..rows.end * width].copy_from_slice(&out.outputs);
        }
        all.resize(mine.len(), 0.0);
        self.world
            .all_reduce_into(&send[..], &mut sums[..], SystemOperation::sum());
        self.world
            .all_reduce_into(&mine[..], &mut all[..], SystemOperation::sum());
        let mut t = self.timing.get();
        t.evaluated += rows.len();
        self.timing.set(t);
        Ok(StepResult {
            loss_sum: sums[0],
            correct: sums[1],
            outputs: all.clone(),
        })
    }

    fn share_evaluation(&mut self, on: bool) {
        self.sharing = on;
    }

    fn params(&self) -> Vec<NamedTensor> {
        let (names, shapes) = self.jit.param_layout();
        let (params, _) = self.jit.snapshot().unwrap_or_default();
        crate::backend::named_flat(names.iter().zip(shapes), params)
    }

    fn states(&self) -> Vec<NamedTensor> {
        let (_, states) = self.jit.snapshot().unwrap_or_default();
        crate::backend::named_flat(self.jit.state_layout().iter().map(|(n, s)| (n, s)), states)
    }

    fn load(&mut self, params: &[NamedTensor], states: &[NamedTensor]) -> Result<(), String> {
        let (names, _) = self.jit.param_layout();
        let layout = self.jit.state_layout();
        let fits = params.len() == names.len()
            && params.iter().zip(names).all(|(t, n)| &t.name == n)
            && states.len() == layout.len()
            && states.iter().zip(layout).all(|(t, (n, _))| &t.name == n);
        if !fits {
            return Err("the weights do not match the model's parameters".into());
        }
        let p: Vec<Vec<f32>> = params.iter().map(|t| t.data.clone()).collect();
        let s: Vec<Vec<f32>> = states.iter().map(|t| t.data.clone()).collect();
        self.jit.restore(p, s)
    }
}

impl Drop for Distributed {
    /// Rank 0 tells the others that the run ended: it joins their next step's sums with
    /// zeros and the end flag. After a failure between collectives only an abort ends the
    /// ranks waiting in one.
    fn drop(&mut self) {
        // A shared evaluation broken off (an error on this rank) leaves the others in its
        // collectives.
        if self.broken || self.sharing {
            self.world.abort(2);
        }
        if self.rank == 0 && !self.ended.get() {
            self.ended.set(true);
            end_sums(&self.world, &self.sum_lengths.borrow(), true);
        }
    }
}
