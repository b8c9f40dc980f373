#include "ligand_mpi.h"

MPI_Comm ligand_mpi_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Datatype ligand_mpi_float(void) { return MPI_FLOAT; }
MPI_Datatype ligand_mpi_double(void) { return MPI_DOUBLE; }
MPI_Datatype ligand_mpi_byte(void) { return MPI_BYTE; }
MPI_Datatype ligand_mpi_int64(void) { return MPI_INT64_T; }
MPI_Datatype ligand_mpi_int32(void) { return MPI_INT32_T; }
MPI_Op ligand_mpi_op_sum(void) { return MPI_SUM; }
MPI_Op ligand_mpi_op_max(void) { return MPI_MAX; }
MPI_Errhandler ligand_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
void *ligand_mpi_in_place(void) { return MPI_IN_PLACE; }
MPI_Status *ligand_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
int ligand_mpi_success(void) { return MPI_SUCCESS; }
int ligand_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
int ligand_mpi_max_library_version_string(void) { return MPI_MAX_LIBRARY_VERSION_STRING; }
int ligand_mpi_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
