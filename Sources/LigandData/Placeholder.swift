public enum LigandData {}
