public enum LigandNN {}
