import CLigandMPI
import CMPI
public enum LigandCollectivePlaceholder { public static func world() -> MPI_Comm? { ligand_mpi_comm_world() } }
