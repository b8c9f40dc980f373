import LigandNumerics
print("ligand \(BLAS.threads)")
