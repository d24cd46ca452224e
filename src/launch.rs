//! Whether an MPI launcher (`mpirun`, `mpiexec`) started this process as one of several: what
//! `nnc train` asks whether or not it was built with the `distributed` feature (without it,
//! N copies would each train the whole model and write the same run directory).

/// The environment variables in which MPI launchers give the job's size: OpenMPI's `mpirun`
/// and MPICH's (Hydra) `mpiexec`.
const WORLD_SIZE_VARIABLES: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];

/// The job's size, when a launcher started this process as one of several; a plain run (or
/// `-np 1`) is `None`.
pub fn launched_world_size() -> Option<usize> {
    WORLD_SIZE_VARIABLES
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .find(|&n| n > 1)
}
