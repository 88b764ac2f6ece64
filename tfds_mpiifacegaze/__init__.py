"""MPIIFaceGaze for TFDS without TensorFlow: the MATLAB v7.3 file layout, the builder
`mpii_face_gaze` (registered on import), a synthetic release and a contact-sheet viewer."""
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder

MPIIFaceGaze = mpii_face_gaze_dataset_builder.MPIIFaceGaze
