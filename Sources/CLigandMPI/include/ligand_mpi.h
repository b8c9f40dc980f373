// OpenMPI's predefined handles are macros over globals (&ompi_mpi_comm_world, ...), which
// Swift cannot import; these functions hand them over as plain values.
#ifndef LIGAND_MPI_H
#define LIGAND_MPI_H
#include <mpi.h>

MPI_Comm ligand_mpi_comm_world(void);
MPI_Datatype ligand_mpi_float(void);
MPI_Datatype ligand_mpi_double(void);
MPI_Datatype ligand_mpi_byte(void);
MPI_Datatype ligand_mpi_int64(void);
MPI_Datatype ligand_mpi_int32(void);
MPI_Op ligand_mpi_op_sum(void);
MPI_Op ligand_mpi_op_max(void);
MPI_Errhandler ligand_mpi_errors_return(void);
void *ligand_mpi_in_place(void);
MPI_Status *ligand_mpi_status_ignore(void);
int ligand_mpi_success(void);
int ligand_mpi_max_error_string(void);
int ligand_mpi_max_library_version_string(void);
int ligand_mpi_max_processor_name(void);

#endif
